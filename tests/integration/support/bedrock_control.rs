//! An in-process double of Amazon Bedrock's control plane on 127.0.0.1 (restJson1, as the
//! `aws-sdk-bedrock` client speaks it): `GET /foundation-models`, `GET /inference-profiles`
//! and `GET /foundation-model-availability/{modelId}`. Requests are checked strictly (method,
//! SigV4 `Authorization` header, known paths and query parameters, `maxResults` range); the
//! account it describes is set per test: which models are offered, their lifecycle, which
//! inference profiles exist, and what this account may invoke. Calls are counted by path.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

type Resp = Response<Full<Bytes>>;

/// One offered model.
#[derive(Debug, Clone)]
pub(crate) struct Offered {
    pub legacy: bool,
    /// Whether this account may invoke it (authorization and entitlement).
    pub authorized: bool,
    /// The only region it is offered in (`None`: every region).
    pub region: Option<String>,
}

#[derive(Default)]
struct Account {
    models: BTreeMap<String, Offered>,
    profiles: Vec<String>,
    calls: BTreeMap<String, usize>,
    /// The region each call was signed for, in order.
    regions: Vec<String>,
    /// Answer every call with this error code (403), as for a principal without permission.
    deny: bool,
}

type Shared = Arc<Mutex<Account>>;

pub(crate) struct ControlDouble {
    endpoint: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ControlDouble {
    pub(crate) async fn start() -> ControlDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state: Shared = Arc::default();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        ControlDouble {
            endpoint,
            state,
            task,
        }
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(crate) fn offer(&self, model_id: &str, legacy: bool, authorized: bool) {
        let mut s = self.state.lock().unwrap();
        let offered = Offered {
            legacy,
            authorized,
            region: None,
        };
        s.models.insert(model_id.into(), offered);
    }

    /// Offered (active, authorized) in `region` only: elsewhere it is not listed.
    pub(crate) fn offer_only_in(&self, region: &str, model_id: &str) {
        let mut s = self.state.lock().unwrap();
        let offered = Offered {
            legacy: false,
            authorized: true,
            region: Some(region.into()),
        };
        s.models.insert(model_id.into(), offered);
    }

    /// The regions calls were signed for, each once, sorted.
    pub(crate) fn regions(&self) -> Vec<String> {
        let mut r = self.state.lock().unwrap().regions.clone();
        r.sort();
        r.dedup();
        r
    }

    pub(crate) fn profile(&self, id: &str) {
        self.state.lock().unwrap().profiles.push(id.into());
    }

    pub(crate) fn deny(&self) {
        self.state.lock().unwrap().deny = true;
    }

    pub(crate) fn calls(&self, path_prefix: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.calls
            .iter()
            .filter(|(p, _)| p.starts_with(path_prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// A control-plane client pointed here with dummy credentials.
    pub(crate) fn client(&self) -> aws_sdk_bedrock::Client {
        let conf = aws_sdk_bedrock::Config::builder()
            .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
            .region(aws_sdk_bedrock::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_bedrock::config::Credentials::new(
                "test-ak", "test-sk", None, None, "test",
            ))
            .build();
        aws_sdk_bedrock::Client::from_conf(conf)
    }
}

fn respond(status: u16, body: Value, error: Option<&str>) -> Resp {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-RequestId", "00000000-0000-4000-8000-000000000001");
    if let Some(code) = error {
        b = b.header("x-amzn-ErrorType", code);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

fn fail(status: u16, code: &str, message: &str) -> Resp {
    respond(status, json!({ "message": message }), Some(code))
}

async fn handle(state: Shared, req: Request<Incoming>) -> Result<Resp, Infallible> {
    Ok(route(&state, &req).unwrap_or_else(|e| e))
}

fn route(state: &Shared, req: &Request<Incoming>) -> Result<Resp, Resp> {
    if req.method() != hyper::Method::GET {
        return Err(fail(405, "ValidationException", "only GET is served here"));
    }
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The credential scope: test-ak/<date>/<region>/bedrock/aws4_request.
    let region = authorization
        .strip_prefix("AWS4-HMAC-SHA256 Credential=test-ak/")
        .and_then(|rest| rest.split('/').nth(1))
        .map(str::to_owned);
    let Some(region) = region else {
        return Err(fail(
            403,
            "UnrecognizedClientException",
            "missing or bad signature",
        ));
    };
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut s = state.lock().unwrap();
    *s.calls.entry(path.clone()).or_default() += 1;
    s.regions.push(region.clone());
    let here = |m: &Offered| m.region.as_ref().is_none_or(|r| *r == region);
    if s.deny {
        return Err(fail(
            403,
            "AccessDeniedException",
            "User is not authorized to perform: bedrock:ListFoundationModels",
        ));
    }
    let arn = |id: &str| format!("arn:aws:bedrock:us-east-1::foundation-model/{id}");
    if path == "/foundation-models" {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let key = pair.split('=').next().unwrap_or("");
            let known = [
                "byProvider",
                "byCustomizationType",
                "byOutputModality",
                "byInferenceType",
            ];
            if !known.contains(&key) {
                return Err(fail(
                    400,
                    "ValidationException",
                    &format!("unknown parameter {key}"),
                ));
            }
        }
        let summaries: Vec<Value> = s
            .models
            .iter()
            .filter(|(_, m)| here(m))
            .map(|(id, m)| {
                let mut lifecycle = json!({ "status": if m.legacy { "LEGACY" } else { "ACTIVE" } });
                if m.legacy {
                    lifecycle["endOfLifeTime"] = json!("2026-09-30T00:00:00Z");
                }
                json!({
                    "modelArn": arn(id),
                    "modelId": id,
                    "modelName": id,
                    "providerName": id.split('.').next().unwrap_or(""),
                    "inputModalities": ["TEXT", "IMAGE"],
                    "outputModalities": ["IMAGE"],
                    "customizationsSupported": [],
                    "inferenceTypesSupported": ["ON_DEMAND"],
                    "modelLifecycle": lifecycle,
                })
            })
            .collect();
        return Ok(respond(200, json!({ "modelSummaries": summaries }), None));
    }
    if path == "/inference-profiles" {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "maxResults" => {
                    let n: u32 = value.parse().unwrap_or(0);
                    if !(1..=1000).contains(&n) {
                        return Err(fail(
                            400,
                            "ValidationException",
                            "maxResults must be 1-1000",
                        ));
                    }
                }
                "nextToken" | "type" => {}
                other => {
                    return Err(fail(
                        400,
                        "ValidationException",
                        &format!("unknown parameter {other}"),
                    ));
                }
            }
        }
        let summaries: Vec<Value> = s
            .profiles
            .iter()
            .map(|id| {
                let model = id.split_once('.').map_or(id.as_str(), |(_, m)| m);
                json!({
                    "inferenceProfileName": format!("US {model}"),
                    "inferenceProfileArn": format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/{id}"),
                    "inferenceProfileId": id,
                    "models": [{ "modelArn": arn(model) }],
                    "status": "ACTIVE",
                    "type": "SYSTEM_DEFINED",
                    "createdAt": "2025-01-01T00:00:00Z",
                    "updatedAt": "2025-01-01T00:00:00Z",
                })
            })
            .collect();
        return Ok(respond(
            200,
            json!({ "inferenceProfileSummaries": summaries }),
            None,
        ));
    }
    if let Some(raw) = path.strip_prefix("/foundation-model-availability/") {
        let id = raw.replace("%3A", ":").replace("%3a", ":");
        let Some(m) = s.models.get(&id) else {
            return Err(fail(
                404,
                "ResourceNotFoundException",
                &format!("model {id} not found"),
            ));
        };
        let yes = |b: bool, y: &str, n: &str| if b { y.to_owned() } else { n.to_owned() };
        return Ok(respond(
            200,
            json!({
                "modelId": id,
                "agreementAvailability": { "status": "AVAILABLE" },
                "authorizationStatus": yes(m.authorized, "AUTHORIZED", "NOT_AUTHORIZED"),
                "entitlementAvailability": yes(m.authorized, "AVAILABLE", "NOT_AVAILABLE"),
                "regionAvailability": yes(here(m), "AVAILABLE", "NOT_AVAILABLE"),
            }),
            None,
        ));
    }
    Err(fail(
        404,
        "UnknownOperationException",
        &format!("no operation at {path}"),
    ))
}
