//! An in-process Amazon Bedrock Runtime double: real `InvokeModel` wire protocol on 127.0.0.1.
//!
//! Serves `POST /model/{modelId}/invoke` (percent-encoded or raw ids) with restJson1 errors
//! (`x-amzn-ErrorType` header + `{"message"}` body, statuses per the reference table), strictly
//! validates each model's body (see `validate`), and answers with real images of the documented
//! size. Faults are injectable per model (rpm window, failing next N calls, latency, access
//! denied, retired, content filter) and requests are counted and time-stamped. A plain tokio
//! server: it also serves a separate process pointed at it via `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`.

pub(crate) mod converse;
mod render;
mod validate;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

use validate::Job;
pub(crate) use validate::Kind;

const ERROR_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazon.bedrock/";
const INVALID_MODEL: &str = "The provided model identifier is invalid.";
const WINDOW: Duration = Duration::from_secs(60);

/// Content-moderation outcomes the double can simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Input blocked: Nova/Titan 400 ValidationException; Stability `Filter reason: input image`.
    Input,
    /// Output blocked: Nova/Titan 200 with `error`; Stability `Filter reason: output image`.
    Output,
    /// Stability `finish_reasons: ["Inference error"]` (Nova/Titan: 424 ModelErrorException).
    InferenceError,
}

#[derive(Default)]
struct ModelState {
    rpm: Option<u32>,
    fail_next: VecDeque<(u16, String)>,
    latency: Duration,
    access_denied: bool,
    retired: bool,
    filter: Option<Filter>,
    /// Background-removal answers come back cropped through the product (its lower half
    /// transparent): a plausible-looking cut-out that is wrong.
    crop_cut_outs: bool,
    arrivals: Vec<Instant>,
    admitted: VecDeque<Instant>,
    successes: u64,
    last_body: Option<Value>,
    /// Converse replies to give next, in order (then the double's own verdict).
    replies: VecDeque<String>,
    /// Converse tokens billed per 200 answer: (input, output), in order.
    token_calls: Vec<(u64, u64)>,
    /// How many of the next Converse answers leave out `usage` (still billed).
    omit_usage: usize,
    /// The region each InvokeModel request was signed for, in order.
    regions: Vec<String>,
    /// Every JSON body received, in order.
    bodies: Vec<Value>,
}

type Shared = Arc<Mutex<HashMap<String, ModelState>>>;

/// A running double. Dropping it stops the server.
pub(crate) struct BedrockDouble {
    endpoint: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BedrockDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An SDK config pointed at `endpoint` with dummy static credentials, region us-east-1 and SDK
/// retries off. Built without the environment: no IMDS, no profile files, no env vars.
pub(crate) fn sdk_config(endpoint: &str) -> aws_sdk_bedrockruntime::Config {
    aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test-ak", "test-sk", None, None, "test"))
        .retry_config(
            aws_sdk_bedrockruntime::config::retry::RetryConfig::standard().with_max_attempts(1),
        )
        .build()
}

/// Faults and counters are keyed by model id; a leading `us.` (inference profile) is ignored.
fn key(model: &str) -> String {
    model.strip_prefix("us.").unwrap_or(model).to_string()
}

impl BedrockDouble {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub(crate) async fn start() -> BedrockDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state: Shared = Arc::default();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                // No Nagle stalls (~40 ms per small answer on loopback), as on a real endpoint.
                let _ = sock.set_nodelay(true);
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
        BedrockDouble {
            endpoint,
            state,
            task,
        }
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// [`sdk_config`] for this double.
    pub(crate) fn sdk_config(&self) -> aws_sdk_bedrockruntime::Config {
        sdk_config(&self.endpoint)
    }

    fn with<R>(&self, model: &str, f: impl FnOnce(&mut ModelState) -> R) -> R {
        f(self.state.lock().unwrap().entry(key(model)).or_default())
    }

    /// At most `rpm` admitted requests per sliding 60 s; more get 429 ThrottlingException.
    pub(crate) fn set_rpm(&self, model: &str, rpm: u32) {
        self.with(model, |m| m.rpm = Some(rpm));
    }

    /// The next `n` calls fail with `status` and error `code` (e.g. 500 InternalServerException,
    /// 503 ServiceUnavailableException, 429 ModelNotReadyException).
    pub(crate) fn fail_next(&self, model: &str, n: usize, status: u16, code: &str) {
        self.with(model, |m| {
            m.fail_next
                .extend((0..n).map(|_| (status, code.to_string())))
        });
    }

    /// The next `n` Converse answers of `model` leave out `usage` (Bedrock still bills their
    /// tokens, and [`BedrockDouble::token_calls`] still counts them).
    pub(crate) fn omit_usage_next(&self, model: &str, n: usize) {
        self.with(model, |m| m.omit_usage += n);
    }

    /// Every call waits this long before answering.
    pub(crate) fn set_latency(&self, model: &str, latency: Duration) {
        self.with(model, |m| m.latency = latency);
    }

    /// Calls get 403 AccessDeniedException (model access not granted).
    pub(crate) fn deny_access(&self, model: &str) {
        self.with(model, |m| m.access_denied = true);
    }

    /// Calls get 400 ValidationException "The provided model identifier is invalid." (past EOL).
    pub(crate) fn retire(&self, model: &str) {
        self.with(model, |m| m.retired = true);
    }

    pub(crate) fn set_filter(&self, model: &str, filter: Option<Filter>) {
        self.with(model, |m| m.filter = filter);
    }

    /// Background removal by `model` returns cut-outs cropped through the product from now on.
    pub(crate) fn crop_cut_outs(&self, model: &str) {
        self.with(model, |m| m.crop_cut_outs = true);
    }

    /// Requests that reached the model (any outcome, including throttled and invalid bodies).
    pub(crate) fn requests(&self, model: &str) -> usize {
        self.with(model, |m| m.arrivals.len())
    }

    /// Requests answered 200 with an image (each one billed).
    pub(crate) fn successes(&self, model: &str) -> u64 {
        self.with(model, |m| m.successes)
    }

    /// Arrival time of every request, in order.
    pub(crate) fn arrivals(&self, model: &str) -> Vec<Instant> {
        self.with(model, |m| m.arrivals.clone())
    }

    /// The largest number of arrivals within any `window` (to check a client's rate limit).
    pub(crate) fn max_in_window(&self, model: &str, window: Duration) -> usize {
        let t = self.arrivals(model);
        (0..t.len())
            .map(|i| {
                t[i..]
                    .iter()
                    .take_while(|x| x.duration_since(t[i]) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// The next Converse answers of `model` reply with these texts, in order.
    pub(crate) fn reply_next(&self, model: &str, texts: &[&str]) {
        self.with(model, |m| {
            m.replies.extend(texts.iter().map(|t| t.to_string()))
        });
    }

    /// The tokens of each Converse answer `model` gave (and billed): (input, output).
    pub(crate) fn token_calls(&self, model: &str) -> Vec<(u64, u64)> {
        self.with(model, |m| m.token_calls.clone())
    }

    /// The region each InvokeModel request to `model` was signed for, in arrival order.
    pub(crate) fn regions(&self, model: &str) -> Vec<String> {
        self.with(model, |m| m.regions.clone())
    }

    /// Every InvokeModel JSON body `model` received, in arrival order.
    pub(crate) fn bodies(&self, model: &str) -> Vec<Value> {
        self.with(model, |m| m.bodies.clone())
    }

    /// The last JSON body received for a model.
    pub(crate) fn last_body(&self, model: &str) -> Option<Value> {
        self.with(model, |m| m.last_body.clone())
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: u16, body: Value, error_code: Option<&str>) -> Resp {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000");
    if let Some(code) = error_code {
        b = b.header("x-amzn-ErrorType", format!("{code}:{ERROR_NAMESPACE}"));
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

fn error(status: u16, code: &str, message: &str) -> Resp {
    let mut body = json!({ "message": message });
    if code == "ModelErrorException" {
        body["originalStatusCode"] = json!(500);
        body["resourceName"] = json!("model");
    }
    respond(status, body, Some(code))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The region a SigV4 `Authorization` header was signed for (its credential scope:
/// `Credential=AK/20261202/us-west-2/bedrock/aws4_request`).
fn signed_region(authorization: &str) -> String {
    authorization
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or_default()
        .to_owned()
}

/// Model id → kind, or the error Bedrock gives for it.
fn lookup(id: &str) -> Result<Kind, Resp> {
    let stab = |name: &str| match name {
        "stable-image-remove-background-v1:0" => Some(Kind::StabRemoveBg),
        "stable-fast-upscale-v1:0" => Some(Kind::StabFast),
        "stable-conservative-upscale-v1:0" => Some(Kind::StabConservative),
        "stable-creative-upscale-v1:0" => Some(Kind::StabCreative),
        "stable-image-inpaint-v1:0" => Some(Kind::StabInpaint),
        "stable-image-erase-object-v1:0" => Some(Kind::StabErase),
        "stable-outpaint-v1:0" => Some(Kind::StabOutpaint),
        "stable-image-search-replace-v1:0" => Some(Kind::StabSearchReplace),
        "stable-image-control-structure-v1:0" => Some(Kind::StabControlStructure),
        "stable-image-style-guide-v1:0" => Some(Kind::StabStyleGuide),
        "stable-image-search-recolor-v1:0" => Some(Kind::StabSearchRecolor),
        "stable-image-control-sketch-v1:0" => Some(Kind::StabControlSketch),
        "stable-style-transfer-v1:0" => Some(Kind::StabStyleTransfer),
        _ => None,
    };
    let kind = match id {
        "stability.stable-image-core-v1:1" => Some(Kind::StabCore),
        "stability.stable-image-ultra-v1:1" => Some(Kind::StabUltra),
        "stability.sd3-5-large-v1:0" => Some(Kind::Sd35Large),
        "amazon.nova-canvas-v1:0" => Some(Kind::NovaCanvas),
        "amazon.titan-image-generator-v2:0" => Some(Kind::TitanV2),
        "amazon.titan-image-generator-v1" => Some(Kind::TitanV1),
        _ => id.strip_prefix("us.stability.").and_then(stab),
    };
    if let Some(k) = kind {
        return Ok(k);
    }
    if id.strip_prefix("stability.").and_then(stab).is_some() {
        let msg = format!(
            "Invocation of model ID {id} with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
        );
        return Err(error(400, "ValidationException", &msg));
    }
    Err(error(400, "ValidationException", INVALID_MODEL))
}

async fn handle(state: Shared, req: Request<Incoming>) -> Result<Resp, Infallible> {
    Ok(route(state, req).await.unwrap_or_else(|e| e))
}

async fn route(state: Shared, req: Request<Incoming>) -> Result<Resp, Resp> {
    let path = req.uri().path().to_string();
    let rest = path
        .strip_prefix("/model/")
        .filter(|_| req.method() == hyper::Method::POST)
        .ok_or_else(|| error(404, "UnknownOperationException", "Unknown operation"))?;
    let (raw_id, converse) = match (rest.strip_suffix("/invoke"), rest.strip_suffix("/converse")) {
        (Some(id), _) => (id, false),
        (_, Some(id)) => (id, true),
        _ => return Err(error(404, "UnknownOperationException", "Unknown operation")),
    };
    let id = percent_decode(raw_id);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if header("authorization").is_none() {
        return Err(error(
            403,
            "AccessDeniedException",
            "Missing Authentication Token",
        ));
    }
    let region = signed_region(&header("authorization").unwrap_or_default());
    let content_type = header("content-type").unwrap_or_default();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if converse && converse::is_image_out_model(&id) {
        return omni_call(&state, &id, &content_type, &body, &region).await;
    }
    if converse {
        with_model(&state, &id, |m| m.regions.push(region.clone()));
        return converse_call(&state, &id, &content_type, &body).await;
    }
    let kind = lookup(&id)?;
    with_model(&state, &id, |m| m.regions.push(region.clone()));
    // The text-to-image services live in us-west-2 only: elsewhere the id is unknown.
    if kind.is_generator() && region != "us-west-2" {
        return Err(error(400, "ValidationException", INVALID_MODEL));
    }
    let latency = admit(&state, &id)?;
    tokio::time::sleep(latency).await;
    if !content_type.starts_with("application/json") {
        return Err(error(
            400,
            "ValidationException",
            &format!("Unsupported content type: {content_type}"),
        ));
    }
    if body.len() > 25_000_000 {
        return Err(error(
            400,
            "ValidationException",
            "Request body exceeds 25000000 bytes",
        ));
    }
    let json: Value = serde_json::from_slice(&body).map_err(|_| error(400, "ValidationException", "Malformed input request: body is not valid JSON, please reformat your input and try again."))?;
    with_model(&state, &id, |m| {
        m.last_body = Some(json.clone());
        m.bodies.push(json.clone());
    });
    let job = validate::validate(kind, &json).map_err(|m| error(400, "ValidationException", &m))?;
    let (filter, crop) = with_model(&state, &id, |m| (m.filter, m.crop_cut_outs));
    let out = tokio::task::spawn_blocking(move || answer(kind, job, filter, crop))
        .await
        .expect("render")?;
    // A 200 whose images were all filtered out returns (and bills) nothing.
    if filter.is_none() {
        with_model(&state, &id, |m| m.successes += 1);
    }
    Ok(out)
}

/// One Converse call: the model must read images, the body must validate; the reply is the next
/// scripted text, else the double's own verdict on the right half of the picture.
async fn converse_call(
    state: &Shared,
    id: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Resp, Resp> {
    if !converse::is_converse_model(id) {
        if lookup(id).is_ok() {
            let msg = "This action doesn't support the model that you provided. Try again with a supported text or chat model.";
            return Err(error(400, "ValidationException", msg));
        }
        return Err(error(400, "ValidationException", INVALID_MODEL));
    }
    let latency = admit(state, id)?;
    tokio::time::sleep(latency).await;
    if !content_type.starts_with("application/json") {
        return Err(error(
            400,
            "ValidationException",
            "Unsupported content type",
        ));
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|_| error(400, "ValidationException", "Malformed request body"))?;
    with_model(state, id, |m| m.last_body = Some(json.clone()));
    let question = converse::validate(&json).map_err(|m| error(400, "ValidationException", &m))?;
    let reply =
        with_model(state, id, |m| m.replies.pop_front()).unwrap_or_else(|| own_verdict(&json));
    let (mut answer, input, output) = converse::answer(&question, &reply);
    with_model(state, id, |m| {
        m.successes += 1;
        m.token_calls.push((input, output));
        omit_usage(m, &mut answer);
    });
    Ok(respond(200, answer, None))
}

/// One Nova 2 Omni Converse call: an instruction edit answered with an image (the input,
/// brightened and warmed a little, at its size; or, with no image, a picture of the instruction
/// at the ratio it names), billed by tokens; a filter answers with a refusal.
async fn omni_call(
    state: &Shared,
    id: &str,
    content_type: &str,
    body: &[u8],
    region: &str,
) -> Result<Resp, Resp> {
    with_model(state, id, |m| m.regions.push(region.to_owned()));
    if !id.starts_with("us.") {
        let msg = "Invocation of model ID amazon.nova-2-omni-v1:0 with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model.";
        return Err(error(400, "ValidationException", msg));
    }
    let latency = admit(state, id)?;
    tokio::time::sleep(latency).await;
    if !content_type.starts_with("application/json") {
        return Err(error(
            400,
            "ValidationException",
            "Unsupported content type",
        ));
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|_| error(400, "ValidationException", "Malformed request body"))?;
    with_model(state, id, |m| {
        m.last_body = Some(json.clone());
        m.bodies.push(json.clone());
    });
    let edit = converse::validate_edit(&json).map_err(|m| error(400, "ValidationException", &m))?;
    let filtered = with_model(state, id, |m| m.filter.is_some());
    let png = (!filtered).then(|| {
        let img = match &edit.image {
            Some(img) => render::relight(img),
            None => {
                let (w, h) = render::size_for_ratio_in(&edit.instruction);
                render::generate(&edit.instruction, w, h)
            }
        };
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
        buf.into_inner()
    });
    let (mut answer, input, output) = converse::image_answer(&edit, png.as_deref());
    with_model(state, id, |m| {
        if png.is_some() {
            m.successes += 1;
        }
        m.token_calls.push((input, output));
        omit_usage(m, &mut answer);
    });
    Ok(respond(200, answer, None))
}

/// Takes `usage` out of a Converse answer when the model's next answers are to lack it.
fn omit_usage(m: &mut ModelState, answer: &mut Value) {
    if m.omit_usage > 0 {
        m.omit_usage -= 1;
        answer.as_object_mut().expect("an object").remove("usage");
    }
}

/// The double's verdict on a picture of input | result: a result that is almost all
/// checkerboard (nothing kept) scores 0.1, anything else 0.9.
fn own_verdict(body: &Value) -> String {
    use base64::Engine;
    let bytes = body["messages"][0]["content"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find_map(|b| b["image"]["source"]["bytes"].as_str())
        })
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    let Some(img) = bytes.and_then(|b| image::load_from_memory(&b).ok()) else {
        return r#"{"score": 0.5, "issues": "no picture"}"#.into();
    };
    let img = img.to_rgb8();
    let (w, h) = img.dimensions();
    let right = (w / 2 + 4).min(w);
    let (mut board, mut all) = (0u64, 0u64);
    for y in 0..h {
        for x in right..w {
            let p = img.get_pixel(x, y).0;
            all += 1;
            board += u64::from(p == [204, 204, 204] || p == [153, 153, 153]);
        }
    }
    if all > 0 && board * 100 > all * 97 {
        r#"{"score": 0.1, "issues": "nothing of the product was kept"}"#.into()
    } else {
        r#"{"score": 0.9, "issues": ""}"#.into()
    }
}

fn with_model<R>(state: &Shared, id: &str, f: impl FnOnce(&mut ModelState) -> R) -> R {
    f(state.lock().unwrap().entry(key(id)).or_default())
}

/// Counts the request and applies access, lifecycle, rate and injected-failure faults in the
/// order Bedrock would (auth, model, quota). Returns the latency to add.
fn admit(state: &Shared, id: &str) -> Result<Duration, Resp> {
    with_model(state, id, |m| {
        let now = Instant::now();
        m.arrivals.push(now);
        if m.access_denied {
            return Err(error(
                403,
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID.",
            ));
        }
        if m.retired {
            return Err(error(400, "ValidationException", INVALID_MODEL));
        }
        while m
            .admitted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            m.admitted.pop_front();
        }
        if m.rpm.is_some_and(|rpm| m.admitted.len() >= rpm as usize) {
            return Err(error(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            ));
        }
        m.admitted.push_back(now);
        if let Some((status, code)) = m.fail_next.pop_front() {
            return Err(error(status, &code, &format!("Injected {code}")));
        }
        Ok(m.latency)
    })
}

/// Renders the job's output, or the content-filter / inference outcome.
fn answer(kind: Kind, job: Job, filter: Option<Filter>, crop: bool) -> Result<Resp, Resp> {
    if kind.is_stability() {
        let reason = match filter {
            Some(Filter::Input) => Some("Filter reason: input image"),
            Some(Filter::Output) => Some("Filter reason: output image"),
            Some(Filter::InferenceError) => Some("Inference error"),
            None => None,
        };
        if let Some(r) = reason {
            return Ok(respond(200, json!({ "finish_reasons": [r] }), None));
        }
    } else {
        match filter {
            Some(Filter::Input) => {
                let msg = "This request has been blocked by our content filters. Please adjust your input image to submit a new request.";
                return Err(error(400, "ValidationException", msg));
            }
            Some(Filter::Output) => {
                let msg = "All of the generated images have been blocked by our content filters.";
                return Ok(respond(200, json!({ "images": [], "error": msg }), None));
            }
            Some(Filter::InferenceError) => {
                return Err(error(424, "ModelErrorException", "Model failed"));
            }
            None => {}
        }
    }
    let images: Vec<String> = match job {
        Job::RemoveBg { img, format } => {
            let cut = render::remove_bg(&img);
            let cut = if crop {
                render::crop_lower_half(cut)
            } else {
                cut
            };
            vec![render::encode_b64(&cut, &format)]
        }
        Job::Variation { img, w, h, n } => {
            let one = render::encode_b64(&render::variation(&img, w, h), "png");
            vec![one; n as usize]
        }
        Job::Upscale { img, w, h, format } => {
            vec![render::encode_b64(&render::upscale(&img, w, h), &format)]
        }
        Job::SearchReplace { img, format } => {
            vec![render::encode_b64(&render::search_replace(&img), &format)]
        }
        Job::Outpaint {
            img,
            margins,
            format,
        } => vec![render::encode_b64(
            &render::outpaint(&img, margins),
            &format,
        )],
        Job::Erase { img, mask, format } => {
            vec![render::encode_b64(
                &render::erase(&img, mask.as_ref()),
                &format,
            )]
        }
        Job::Generate {
            prompt,
            w,
            h,
            format,
        } => vec![render::encode_b64(
            &render::generate(&prompt, w, h),
            &format,
        )],
        Job::StyleTransfer { img, style, format } => {
            vec![render::encode_b64(
                &render::style_transfer(&img, &style),
                &format,
            )]
        }
        Job::Inpaint { img, mask, format } => {
            vec![render::encode_b64(
                &render::inpaint(&img, mask.as_ref()),
                &format,
            )]
        }
    };
    let body = if kind.is_stability() {
        json!({ "seeds": [42], "finish_reasons": [null], "images": images })
    } else {
        json!({ "images": images })
    };
    Ok(respond(200, body, None))
}
