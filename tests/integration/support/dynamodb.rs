//! DynamoDB on 127.0.0.1 for the coordination tests: moto's server, a real implementation of
//! DynamoDB's JSON wire protocol (expressions, conditions, `ConditionalCheckFailedException`),
//! installed from PyPI by `.ci/fetch-moto.sh` and run one request at a time by
//! `moto_serial.py` (real DynamoDB applies writes to an item one at a time; moto's threaded
//! server might not). Tables are created through the real `aws-sdk-dynamodb` client with the key
//! `retouch` expects.
//!
//! Why moto and not an in-process double: the coordination's correctness rests on DynamoDB's
//! expression semantics (conditions on missing attributes, `ADD`, map paths, `UPDATED_OLD`),
//! which a double written here would only restate; moto implements them independently.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// A running moto server. Dropping it stops the server.
pub(crate) struct Dynamo {
    pub endpoint: String,
    pub client: aws_sdk_dynamodb::Client,
    child: Child,
}

impl Drop for Dynamo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python with moto installed: `RETOUCH_TEST_MOTO`, else `target/test-moto/bin/python`.
fn python() -> PathBuf {
    match std::env::var_os("RETOUCH_TEST_MOTO") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-moto/bin/python"),
    }
}

impl Dynamo {
    /// Starts moto on 127.0.0.1 (a port of its choosing).
    pub(crate) fn start() -> Dynamo {
        let python = python();
        assert!(
            python.exists(),
            "{} is missing: run `bash .ci/fetch-moto.sh` (installs moto's server from PyPI) or set RETOUCH_TEST_MOTO",
            python.display()
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/integration/support/moto_serial.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("moto's port");
        let port: u16 = line.trim().parse().expect("moto printed its port");
        let endpoint = format!("http://127.0.0.1:{port}");
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(Credentials::new("test-ak", "test-sk", None, None, "test"))
            .build();
        Dynamo {
            endpoint,
            client: aws_sdk_dynamodb::Client::from_conf(conf),
            child,
        }
    }

    /// Creates the table `name` with the key retouch expects (`pk`, `sk`, both strings).
    pub(crate) async fn create_table(&self, name: &str) {
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let key = |n: &str, t| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .unwrap()
        };
        self.client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .send()
            .await
            .expect("create table");
    }

    /// How many requests of each DynamoDB operation the server answered (`PutItem`, …).
    pub(crate) fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).expect("connect to moto");
        use std::io::{Read, Write};
        write!(stream, "GET /_counts HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("{}");
        serde_json::from_str(body).expect("counts")
    }

    /// The item (`pk`, `-`) of `table`, read consistently.
    async fn item(
        &self,
        table: &str,
        pk: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S("-".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item");
        out.item().cloned()
    }

    /// The number attribute `attr` of the item (`pk`, `-`), if there is one.
    pub(crate) async fn number(&self, table: &str, pk: &str, attr: &str) -> Option<i64> {
        self.item(table, pk)
            .await?
            .get(attr)?
            .as_n()
            .ok()?
            .parse()
            .ok()
    }

    /// Deletes the item (`pk`, `-`) of `table` (as its time to live would).
    pub(crate) async fn delete(&self, table: &str, pk: &str) {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.client
            .delete_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S("-".into()))
            .send()
            .await
            .expect("delete item");
    }

    /// How many entries the map attribute `attr` of the item (`pk`, `-`) has.
    pub(crate) async fn map_len(&self, table: &str, pk: &str, attr: &str) -> usize {
        self.item(table, pk)
            .await
            .and_then(|i| i.get(attr)?.as_m().ok().map(|m| m.len()))
            .unwrap_or(0)
    }
}
