//! A real S3-compatible server in the test process: `s3s` + `s3s-fs` on 127.0.0.1:0, with
//! SigV4 (and presigned-URL) signatures checked against dummy keys, so the real `aws-sdk-s3`
//! client in `retouch` is under test. Faults can be injected per method and key (a 500
//! `InternalError`, as S3 answers when it is having a bad moment), and injected faults are counted.
//!
//! The server runs on its own Tokio runtime, so plain `#[test]`s can start the `retouch` binary
//! against it and seed or inspect buckets through [`S3Server::block_on`].
//!
//! ListObjectsV2 honours `encoding-type=url` as S3 does (s3s-fs echoes the parameter but lists
//! keys raw): keys, prefixes, the delimiter and start-after are percent-encoded, a space as `+`.
//! [`S3Server::set_url_encoding`] turns that off, to show what a raw listing does to a client.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use hyper::body::Incoming;
use tempfile::TempDir;

pub(crate) const ACCESS_KEY: &str = "test-ak";
pub(crate) const SECRET_KEY: &str = "test-sk";

/// Requests matching `method` whose path contains `path_contains` fail with a 500, `remaining`
/// more times.
struct Fault {
    method: &'static str,
    path_contains: String,
    remaining: usize,
}

#[derive(Default)]
struct Faults {
    list: Vec<Fault>,
    injected: usize,
    /// Added before answering every GET (a network round trip to a real bucket).
    get_latency: std::time::Duration,
    /// GetObject requests seen (GETs of a key; listings are GETs of the bucket).
    object_gets: usize,
}

/// A running server. Dropping it stops the server and removes its files.
pub(crate) struct S3Server {
    pub endpoint: String,
    pub client: aws_sdk_s3::Client,
    faults: Arc<Mutex<Faults>>,
    url_encoding: Arc<AtomicBool>,
    rt: tokio::runtime::Runtime,
    task: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3Server {
    pub(crate) fn start() -> S3Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let dir = tempfile::tempdir().expect("server root");
        let faults = Arc::new(Mutex::new(Faults::default()));
        let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs");
        let url_encoding = Arc::new(AtomicBool::new(true));
        let store = Store {
            fs,
            url_encoding: url_encoding.clone(),
        };
        let mut builder = s3s::service::S3ServiceBuilder::new(store);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = rt.spawn(serve(listener, service, faults.clone()));
        let client = rt.block_on(client(&endpoint));
        S3Server {
            endpoint,
            client,
            faults,
            url_encoding,
            rt,
            task,
            _dir: dir,
        }
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The environment that points the `retouch` binary at this server.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_S3", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    pub(crate) fn create_bucket(&self, bucket: &str) {
        self.block_on(self.client.create_bucket().bucket(bucket).send())
            .expect("create bucket");
    }

    /// Puts every `(key, bytes)`, 16 at a time.
    pub(crate) fn put_all(
        &self,
        bucket: &str,
        objects: Vec<(String, Vec<u8>)>,
        content_type: &str,
    ) {
        self.block_on(async {
            let permits = Arc::new(tokio::sync::Semaphore::new(16));
            let mut tasks = tokio::task::JoinSet::new();
            for (key, bytes) in objects {
                let (client, permits) = (self.client.clone(), permits.clone());
                let (bucket, ct) = (bucket.to_owned(), content_type.to_owned());
                tasks.spawn(async move {
                    let _p = permits.acquire_owned().await.unwrap();
                    client
                        .put_object()
                        .bucket(bucket)
                        .key(&key)
                        .content_type(ct)
                        .body(ByteStream::from(bytes))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
                });
            }
            tasks.join_all().await;
        });
    }

    /// Every key under `prefix`, sorted.
    pub(crate) fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.block_on(async {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            let mut keys = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.expect("list");
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(String::from)),
                );
            }
            keys.sort();
            keys
        })
    }

    /// The object's body and Content-Type.
    pub(crate) fn get(&self, bucket: &str, key: &str) -> (Vec<u8>, String) {
        self.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
            let ct = out.content_type().unwrap_or_default().to_owned();
            (out.body.collect().await.unwrap().to_vec(), ct)
        })
    }

    /// The object's user metadata (`x-amz-meta-*`, without the prefix).
    pub(crate) fn metadata(
        &self,
        bucket: &str,
        key: &str,
    ) -> std::collections::HashMap<String, String> {
        self.block_on(async {
            let out = self
                .client
                .head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("head {key}: {e:?}"));
            out.metadata().cloned().unwrap_or_default()
        })
    }

    /// The next `times` requests with `method` whose path contains `path_contains` get a 500.
    pub(crate) fn fail(&self, method: &'static str, path_contains: &str, times: usize) {
        self.faults.lock().unwrap().list.push(Fault {
            method,
            path_contains: path_contains.to_owned(),
            remaining: times,
        });
    }

    /// Every GET request (GetObject, ListObjectsV2) waits `latency` before it is answered.
    pub(crate) fn set_get_latency(&self, latency: std::time::Duration) {
        self.faults.lock().unwrap().get_latency = latency;
    }

    /// How many GetObject requests the server has seen.
    pub(crate) fn object_gets(&self) -> usize {
        self.faults.lock().unwrap().object_gets
    }

    /// How many faults were injected so far.
    pub(crate) fn injected(&self) -> usize {
        self.faults.lock().unwrap().injected
    }

    /// Whether ListObjectsV2 encodes keys when asked to (on by default, as S3 does).
    pub(crate) fn set_url_encoding(&self, on: bool) {
        self.url_encoding.store(on, Ordering::SeqCst);
    }
}

/// s3s-fs, with ListObjectsV2's `encoding-type=url` applied.
struct Store {
    fs: s3s_fs::FileSystem,
    /// Off: keys are listed raw whatever the request asks, as s3s-fs itself does.
    url_encoding: Arc<AtomicBool>,
}

type S3Future<'a, T> = Pin<Box<dyn Future<Output = s3s::S3Result<s3s::S3Response<T>>> + Send + 'a>>;

/// Trait methods passed straight to s3s-fs. `s3s::S3` is an `async_trait`; these are the
/// signatures it expands to, which spares the tests a dependency on `async-trait`.
macro_rules! delegate {
    ($($method:ident($input:ident) -> $output:ident;)*) => {$(
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            req: s3s::S3Request<s3s::dto::$input>,
        ) -> S3Future<'async_trait, s3s::dto::$output>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            s3s::S3::$method(&self.fs, req)
        }
    )*};
}

impl s3s::S3 for Store {
    delegate! {
        create_bucket(CreateBucketInput) -> CreateBucketOutput;
        copy_object(CopyObjectInput) -> CopyObjectOutput;
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
        delete_object(DeleteObjectInput) -> DeleteObjectOutput;
        delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
        get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
        get_object(GetObjectInput) -> GetObjectOutput;
        head_bucket(HeadBucketInput) -> HeadBucketOutput;
        head_object(HeadObjectInput) -> HeadObjectOutput;
        list_buckets(ListBucketsInput) -> ListBucketsOutput;
        list_objects(ListObjectsInput) -> ListObjectsOutput;
        put_object(PutObjectInput) -> PutObjectOutput;
        create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
        upload_part(UploadPartInput) -> UploadPartOutput;
        upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
        list_parts(ListPartsInput) -> ListPartsOutput;
        complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
        abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
    }

    fn list_objects_v2<'life0, 'async_trait>(
        &'life0 self,
        req: s3s::S3Request<s3s::dto::ListObjectsV2Input>,
    ) -> S3Future<'async_trait, s3s::dto::ListObjectsV2Output>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let asked = req.input.encoding_type.as_ref();
            let encode = self.url_encoding.load(Ordering::SeqCst)
                && asked.is_some_and(|e| e.as_str() == s3s::dto::EncodingType::URL);
            let mut resp = s3s::S3::list_objects_v2(&self.fs, req).await?;
            if encode {
                url_encode_listing(&mut resp.output);
            }
            Ok(resp)
        })
    }
}

/// Encodes what S3 encodes in a listing made with `encoding-type=url`.
fn url_encode_listing(out: &mut s3s::dto::ListObjectsV2Output) {
    let keys = out.contents.iter_mut().flatten().map(|o| &mut o.key);
    let prefixes = out
        .common_prefixes
        .iter_mut()
        .flatten()
        .map(|p| &mut p.prefix);
    let fields = [&mut out.prefix, &mut out.delimiter, &mut out.start_after];
    for s in keys.chain(prefixes).chain(fields).flatten() {
        *s = url_encode(s);
    }
}

/// S3's URL encoding of a key: unreserved characters and `/` as they are, a space as `+`, every
/// other byte as `%XX`.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A client for seeding and inspecting, built without the environment.
async fn client(endpoint: &str) -> aws_sdk_s3::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .load()
        .await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

async fn serve(
    listener: tokio::net::TcpListener,
    service: s3s::service::S3Service,
    faults: Arc<Mutex<Faults>>,
) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        // Without it, Nagle's algorithm meets the client's delayed ACK and small responses
        // stall ~40 ms each on loopback, which no real S3 endpoint does.
        let _ = sock.set_nodelay(true);
        let (service, faults) = (service.clone(), faults.clone());
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (service, faults) = (service.clone(), faults.clone());
                async move {
                    if should_fail(&faults, &req) {
                        return Ok::<_, Infallible>(internal_error());
                    }
                    let latency = {
                        let mut f = faults.lock().unwrap();
                        let path = req.uri().path().trim_start_matches('/');
                        if req.method() == hyper::Method::GET
                            && path.split_once('/').is_some_and(|(_, key)| !key.is_empty())
                        {
                            f.object_gets += 1;
                        }
                        f.get_latency
                    };
                    if req.method() == hyper::Method::GET && !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    let req = req.map(s3s::Body::from);
                    Ok(match service.call(req).await {
                        Ok(resp) => resp,
                        Err(_) => internal_error(),
                    })
                }
            });
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), handler)
                    .await;
        });
    }
}

fn should_fail(faults: &Mutex<Faults>, req: &hyper::Request<Incoming>) -> bool {
    let mut f = faults.lock().unwrap();
    let path = req.uri().path().to_owned();
    let hit = f.list.iter_mut().find(|x| {
        x.remaining > 0 && req.method().as_str() == x.method && path.contains(&x.path_contains)
    });
    match hit {
        Some(fault) => {
            fault.remaining -= 1;
            f.injected += 1;
            true
        }
        None => false,
    }
}

fn internal_error() -> hyper::Response<s3s::Body> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
                <Message>We encountered an internal error. Please try again.</Message></Error>";
    hyper::Response::builder()
        .status(500)
        .header("content-type", "application/xml")
        .body(s3s::Body::from(body.to_owned()))
        .unwrap()
}
