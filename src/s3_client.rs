//! The one S3 client of a run, shared by [`crate::sources`] (listing, reading) and
//! [`crate::sinks`] (writing): built once from `aws.region`, `aws.profile` and the endpoint
//! settings, and cheap to clone (the SDK client is reference-counted).
//!
//! Every S3 call goes through here, so failures are classified in one place: a missing bucket and
//! access denied are named as such (with the bucket and key), and transient failures (throttling,
//! 5xx, timeouts, dropped connections) are retried by the SDK's standard retry policy. A body that
//! breaks off mid-download is retried here. Only this file, `sources` and `sinks` import
//! `aws-sdk-s3`; nothing else sees an SDK type. Listings ask for URL-encoded keys (a key may hold
//! characters XML 1.0 cannot carry) and decode them; an error's detail never carries more than a
//! few hundred bytes of what the server sent.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use crate::reason::Reason;
use aws_sdk_s3::types::EncodingType;

/// The most of an error's detail (which may quote a whole response body) kept in messages.
const MAX_DETAIL: usize = 300;

/// How to reach S3 (from the manifest's `aws:` section; the SDK's own environment variables,
/// such as `AWS_ENDPOINT_URL_S3`, apply when these leave something unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// An S3-compatible endpoint (`aws.s3.endpoint_url`), e.g. MinIO.
    pub endpoint_url: Option<String>,
    /// Address buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key`.
    pub path_style: bool,
    /// Attempts per call, retries included; 0 means the default (4).
    pub attempts: u32,
}

/// A ready S3 client. Clones share one connection pool.
/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    /// Names this exact content without reading it: the ETag and size (the ETag changes whenever
    /// the object is written again), or, from stores whose listings carry no ETag, the last
    /// write's time and the size. `None` when the listing gave neither.
    pub version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct S3 {
    client: Client,
    attempts: u32,
}

/// Why an S3 call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    #[error("bucket `{bucket}` does not exist (s3://{bucket}/{key})")]
    NoSuchBucket { bucket: String, key: String },
    #[error("access denied to s3://{bucket}/{key}: {detail}")]
    AccessDenied {
        bucket: String,
        key: String,
        detail: String,
    },
    #[error("s3://{bucket}/{key} does not exist")]
    NoSuchKey { bucket: String, key: String },
    #[error("S3 request for s3://{bucket}/{key} failed: {detail}")]
    Failed {
        bucket: String,
        key: String,
        detail: String,
    },
    #[error(
        "s3://{bucket}/{key} is {size} bytes or more, over the {limit}-byte limit; it was not read"
    )]
    TooLarge {
        bucket: String,
        key: String,
        size: u64,
        limit: u64,
    },
}

impl S3Error {
    /// The report's reason.
    pub fn reason(&self) -> Reason {
        match self {
            S3Error::NoSuchBucket { .. } => Reason::S3NoSuchBucket,
            S3Error::AccessDenied { .. } => Reason::S3AccessDenied,
            S3Error::NoSuchKey { .. } => Reason::S3NoSuchKey,
            S3Error::Failed { .. } => Reason::S3Failed,
            S3Error::TooLarge { .. } => Reason::TooLarge,
        }
    }
}

impl S3 {
    /// Builds the client from `settings` and the standard AWS configuration chain. Resolves no
    /// credentials yet (that happens on the first call), so it never fails.
    pub async fn connect(settings: &S3Settings) -> S3 {
        S3::build(settings, None).await
    }

    /// Like [`S3::connect`], with fixed credentials instead of the credential chain (tests,
    /// benchmarks, embedding).
    pub async fn connect_with_credentials(
        settings: &S3Settings,
        access_key: &str,
        secret_key: &str,
    ) -> S3 {
        let creds = Credentials::new(access_key, secret_key, None, None, "retouch-static");
        S3::build(settings, Some(creds)).await
    }

    async fn build(settings: &S3Settings, creds: Option<Credentials>) -> S3 {
        let attempts = if settings.attempts == 0 {
            4
        } else {
            settings.attempts
        };
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(creds) = creds {
            loader = loader.credentials_provider(creds);
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(settings.path_style)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(50)),
            );
        if sdk.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        S3 {
            client: Client::from_conf(conf.build()),
            attempts,
        }
    }

    /// Every key under `prefix` (ListObjectsV2, all pages), in S3's lexicographic order.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error> {
        let objects = self.list_objects(bucket, prefix).await?;
        Ok(objects.into_iter().map(|o| o.key).collect())
    }

    /// Every object under `prefix` with its version (ETag and size, when the listing gives
    /// them), following continuation tokens.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ListedObject>, S3Error> {
        // A key may hold characters XML 1.0 cannot carry (control characters): listed raw, one
        // such key makes the whole listing unreadable. URL-encoded, every key arrives.
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .encoding_type(EncodingType::Url)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(e, bucket, prefix))?;
            // Only a store that says it encoded the keys has them decoded.
            let encoded = page.encoding_type() == Some(&EncodingType::Url);
            objects.extend(page.contents().iter().filter_map(|o| {
                let key = o.key()?;
                let key = if encoded {
                    url_decode(key)
                } else {
                    key.to_owned()
                };
                let version = o
                    .size()
                    .and_then(|size| match (o.e_tag(), o.last_modified()) {
                        (Some(etag), _) => Some(format!("etag:{}:{size}", etag.trim_matches('"'))),
                        // Stores that list no ETag: the last write's time and the size.
                        (None, Some(at)) => Some(format!(
                            "modified:{}.{:09}:{size}",
                            at.secs(),
                            at.subsec_nanos()
                        )),
                        (None, None) => None,
                    });
                Some(ListedObject { key, version })
            }));
        }
        Ok(objects)
    }

    /// Whether `bucket` exists and these credentials may use it (HeadBucket).
    pub async fn check_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        self.client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(e, bucket, ""))
    }

    /// The whole object. Transient failures are retried, including a body that breaks off.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, S3Error> {
        self.get_range(bucket, key, None, u64::MAX).await
    }

    /// The object's first `len` bytes (all of it when `len` is `None`). An object of more than
    /// `max_bytes` is refused ([`S3Error::TooLarge`]) from its Content-Length, or as soon as its
    /// body passes the limit, so memory stays bounded whatever the store sends.
    pub async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        len: Option<u64>,
        max_bytes: u64,
    ) -> Result<Vec<u8>, S3Error> {
        let too_large = |size| S3Error::TooLarge {
            bucket: bucket.into(),
            key: key.into(),
            size,
            limit: max_bytes,
        };
        let mut attempt = 1;
        loop {
            let request = self.client.get_object().bucket(bucket).key(key);
            let request = match len {
                Some(n) => request.range(format!("bytes=0-{}", n.saturating_sub(1))),
                None => request,
            };
            let out = request.send().await.map_err(|e| classify(e, bucket, key))?;
            let announced = out.content_length().unwrap_or(0).max(0) as u64;
            if announced > max_bytes {
                return Err(too_large(announced));
            }
            match read_body(out.body, announced, max_bytes).await {
                Ok(Some(data)) => return Ok(data),
                Ok(None) => return Err(too_large(max_bytes.saturating_add(1))),
                Err(e) if attempt < self.attempts => {
                    tracing::debug!("s3://{bucket}/{key}: body broke off ({e}); retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                }
                Err(e) => {
                    return Err(S3Error::Failed {
                        bucket: bucket.into(),
                        key: key.into(),
                        detail: clip(format!("reading the body failed: {e}")),
                    });
                }
            }
        }
    }

    /// The size of object `key`, or `None` when there is no such object (HeadObject).
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<u64>, S3Error> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(classify(e, bucket, key)),
        }
    }

    /// Writes `bytes` to `key` with `content_type` (PutObject; transient failures retried).
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), S3Error> {
        self.put_with_metadata(bucket, key, bytes, content_type, &[])
            .await
    }

    /// [`S3::put`] with user metadata (`x-amz-meta-<key>: <value>`; ASCII, at most 2 KB in all).
    pub async fn put_with_metadata(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        metadata: &[(String, String)],
    ) -> Result<(), S3Error> {
        let mut put = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes));
        for (k, v) in metadata {
            put = put.metadata(k, v);
        }
        put.send()
            .await
            .map(|_| ())
            .map_err(|e| classify(e, bucket, key))
    }

    /// Writes `bytes` to `key` only if no object is there (PutObject with `If-None-Match: *`).
    /// `Ok(false)`: one already was (412), or another writer's conditional put of the same key
    /// is in progress (409); either way the caller's content-addressed object is or will be
    /// there.
    pub async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<bool, S3Error> {
        let sent = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .if_none_match("*")
            .body(ByteStream::from(bytes))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) => {
                let status = e.raw_response().map(HttpStatus::http_status);
                let code = e.code().unwrap_or_default();
                if matches!(status, Some(412 | 409))
                    || matches!(code, "PreconditionFailed" | "ConditionalRequestConflict")
                {
                    Ok(false)
                } else {
                    Err(classify(e, bucket, key))
                }
            }
        }
    }

    /// Deletes `key` (DeleteObject; no error when it is already gone).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify(e, bucket, key))
    }

    /// The object (at most `max_bytes`), or `None` when there is no such key.
    pub async fn get_optional(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, S3Error> {
        match self.get_range(bucket, key, None, max_bytes).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(S3Error::NoSuchKey { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A presigned GET URL for `key`, valid for `expires` (at most 7 days).
    pub async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires: Duration,
    ) -> Result<String, S3Error> {
        let failed = |detail: String| S3Error::Failed {
            bucket: bucket.into(),
            key: key.into(),
            detail,
        };
        let config = PresigningConfig::expires_in(expires).map_err(|e| failed(e.to_string()))?;
        let request = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| failed(clip(DisplayErrorContext(&e).to_string())))?;
        Ok(request.uri().to_owned())
    }
}

/// Reads a body of `announced` bytes, or `None` once it passes `max_bytes`.
async fn read_body(
    mut body: ByteStream,
    announced: u64,
    max_bytes: u64,
) -> Result<Option<Vec<u8>>, aws_sdk_s3::primitives::ByteStreamError> {
    let mut data = Vec::with_capacity(announced.min(max_bytes) as usize);
    while let Some(chunk) = body.try_next().await? {
        if (data.len() + chunk.len()) as u64 > max_bytes {
            return Ok(None);
        }
        data.extend_from_slice(&chunk);
    }
    Ok(Some(data))
}

/// Maps an SDK failure to what the user needs to know, naming the bucket and key.
fn classify<E, R>(e: SdkError<E, R>, bucket: &str, key: &str) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let status = e.raw_response().map(HttpStatus::http_status);
    let code = e.code().unwrap_or_default().to_owned();
    let detail = match e.message() {
        Some(m) if !code.is_empty() => format!("{code}: {m}"),
        _ => DisplayErrorContext(&e).to_string(),
    };
    let detail = clip(detail);
    let (bucket, key) = (bucket.to_owned(), key.to_owned());
    match (code.as_str(), status) {
        ("NoSuchBucket", _) => S3Error::NoSuchBucket { bucket, key },
        ("NoSuchKey", _) => S3Error::NoSuchKey { bucket, key },
        ("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch", _) | (_, Some(403)) => {
            S3Error::AccessDenied {
                bucket,
                key,
                detail,
            }
        }
        // HeadBucket answers a missing bucket with a bare 404.
        ("" | "NotFound", Some(404)) if key.is_empty() => S3Error::NoSuchBucket { bucket, key },
        _ => S3Error::Failed {
            bucket,
            key,
            detail,
        },
    }
}

/// `detail` cut to [`MAX_DETAIL`] bytes: an SDK error that could not parse a response quotes
/// all of it (5.5 KB for one page of a listing).
fn clip(detail: String) -> String {
    if detail.len() <= MAX_DETAIL {
        return detail;
    }
    let mut end = MAX_DETAIL;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    let cut = detail.len() - end;
    format!("{}… ({cut} more bytes not shown)", &detail[..end])
}

/// A key from a listing made with `EncodingType=url`: `%XX` escapes, and `+` for a space, as S3
/// writes them. Bytes that do not form UTF-8 are replaced; such a key names no object, and
/// reading it fails that one image.
fn url_decode(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(h)) => {
                let h = std::str::from_utf8(h).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(0));
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The HTTP status of a raw response, whatever the SDK's response type.
trait HttpStatus {
    fn http_status(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn http_status(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_kebab_case_and_distinct() {
        let (b, k) = (String::from("b"), String::from("k"));
        let all = [
            S3Error::NoSuchBucket {
                bucket: b.clone(),
                key: k.clone(),
            },
            S3Error::AccessDenied {
                bucket: b.clone(),
                key: k.clone(),
                detail: "x".into(),
            },
            S3Error::NoSuchKey {
                bucket: b.clone(),
                key: k.clone(),
            },
            S3Error::Failed {
                bucket: b,
                key: k,
                detail: "x".into(),
            },
        ];
        let reasons: std::collections::HashSet<_> = all.iter().map(S3Error::reason).collect();
        assert_eq!(reasons.len(), 4);
        assert!(all[0].to_string().contains("bucket `b` does not exist"));
    }

    #[test]
    fn listed_keys_are_url_decoded_as_s3_encodes_them() {
        assert_eq!(url_decode("photos/a%01b.jpg"), "photos/a\u{1}b.jpg");
        assert_eq!(url_decode("run+books/a%2Bb%20c.jpg"), "run books/a+b c.jpg");
        assert_eq!(url_decode("%ED%95%9C%EA%B8%80/x.txt"), "한글/x.txt");
        assert_eq!(url_decode("100%25.csv"), "100%.csv");
        // Not escapes: kept as they are.
        assert_eq!(url_decode("50%.jpg"), "50%.jpg");
        assert_eq!(url_decode("a%+1b%2"), "a% 1b%2");
        assert_eq!(url_decode("bad%FF.jpg"), "bad\u{FFFD}.jpg");
    }

    #[test]
    fn details_are_clipped_to_a_few_hundred_bytes() {
        assert_eq!(clip("short".into()), "short");
        let body = format!("unhandled error: <ListBucketResult>{}", "é".repeat(3_000));
        let clipped = clip(body);
        assert!(clipped.len() < MAX_DETAIL + 40, "{}", clipped.len());
        assert!(clipped.ends_with(" more bytes not shown)"), "{clipped}");
    }
}
