//! S3 for the commands that read what runs wrote (`check --preset`, `report`, `report merge`):
//! one client, built on first use from `--region`, `--profile` and `--s3-endpoint` and the
//! standard AWS configuration chain.

use retouch::s3_client::{S3, S3Settings};

use super::args::S3Flags;

/// Objects larger than this are refused unread.
pub(super) const MAX_OBJECT_BYTES: u64 = 256 << 20;

/// A lazily built S3 client.
pub(super) struct S3Access {
    flags: S3Flags,
    client: Option<S3>,
}

impl S3Access {
    pub(super) fn new(flags: &S3Flags) -> S3Access {
        S3Access {
            flags: flags.clone(),
            client: None,
        }
    }

    /// The client, built on first use.
    pub(super) async fn client(&mut self) -> &S3 {
        if self.client.is_none() {
            let settings = S3Settings {
                region: self.flags.region.clone(),
                profile: self.flags.profile.clone(),
                endpoint_url: self.flags.s3_endpoint.clone(),
                // S3-compatible servers (MinIO and the like) address buckets by path.
                path_style: self.flags.s3_endpoint.is_some(),
                attempts: 0,
            };
            self.client = Some(S3::connect(&settings).await);
        }
        self.client.as_ref().expect("set above")
    }

    /// The whole object, at most [`MAX_OBJECT_BYTES`].
    pub(super) async fn get(&mut self, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        let client = self.client().await;
        Ok(client
            .get_range(bucket, key, None, MAX_OBJECT_BYTES)
            .await?)
    }

    /// The object, or `None` when there is no such key.
    pub(super) async fn get_if_exists(
        &mut self,
        bucket: &str,
        key: &str,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let client = self.client().await;
        match client.head(bucket, key).await? {
            None => Ok(None),
            Some(_) => Ok(Some(
                client
                    .get_range(bucket, key, None, MAX_OBJECT_BYTES)
                    .await?,
            )),
        }
    }
}

pub(super) fn is_s3(s: &str) -> bool {
    s.starts_with("s3://")
}
