//! S3 inputs: `s3://bucket/prefix/` (every image key under the prefix) and
//! `s3://bucket/prefix/**/*.jpg` (keys below the prefix matching the glob).
//!
//! Listing is ListObjectsV2 over every page (catalogues hold far more than 1,000 keys); only
//! keys are kept, never bodies, so a listing of 100,000 objects is a few megabytes. Folder-marker
//! keys (`photos/`) and non-image keys are skipped and counted. A key's path relative to the
//! prefix is what outputs mirror; it is taken as is (sanitising it is the sinks' job), so a hostile
//! key such as `photos/../../etc/x.jpg` reaches the plan and becomes a failed row there.

use std::collections::HashSet;
use std::path::Path;

use globset::{GlobBuilder, GlobMatcher, GlobSet};

use super::local_glob::is_image_extension;
use super::{InputItem, InputLocation, Listing, SourceError};
use crate::s3_client::S3;

/// One `s3://` input, ready to list.
#[derive(Debug)]
pub struct S3Input {
    pub bucket: String,
    /// Literal key prefix, empty or ending in `/`.
    pub prefix: String,
    matcher: Option<GlobMatcher>,
}

impl S3Input {
    pub fn new(bucket: &str, prefix: &str, pattern: Option<&str>) -> Result<S3Input, SourceError> {
        let matcher = match pattern {
            None => None,
            Some(p) => Some(
                GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .map_err(|source| SourceError::BadGlob {
                        pattern: p.to_owned(),
                        source,
                    })?
                    .compile_matcher(),
            ),
        };
        Ok(S3Input {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            matcher,
        })
    }

    /// Lists the prefix, adding every matching image key to `listing`. A prefix with no keys
    /// at all is an error naming the bucket and prefix.
    pub async fn list(
        &self,
        s3: &S3,
        exclude: &GlobSet,
        listing: &mut Listing,
        seen: &mut HashSet<String>,
    ) -> Result<(), SourceError> {
        let objects = s3.list_objects(&self.bucket, &self.prefix).await?;
        if objects.is_empty() {
            return Err(SourceError::EmptyPrefix {
                bucket: self.bucket.clone(),
                prefix: self.prefix.clone(),
            });
        }
        for object in objects {
            self.add(object.key, object.version, exclude, listing, seen);
        }
        Ok(())
    }

    /// Classifies one listed key.
    fn add(
        &self,
        key: String,
        version: Option<String>,
        exclude: &GlobSet,
        listing: &mut Listing,
        seen: &mut HashSet<String>,
    ) {
        let rel = key.strip_prefix(&self.prefix).unwrap_or(&key).to_owned();
        if key.ends_with('/') {
            listing.skipped_folder_markers += 1;
            return;
        }
        if self.matcher.as_ref().is_some_and(|m| !is_match(m, &rel)) {
            return;
        }
        if !is_image_extension(Path::new(&key)) {
            listing.skipped_non_images += 1;
            return;
        }
        let display = format!("s3://{}/{key}", self.bucket);
        let name = key.rsplit('/').next().unwrap_or(&key);
        if exclude.is_match(&rel) || exclude.is_match(&key) || exclude.is_match(name) {
            listing.excluded += 1;
            return;
        }
        if !seen.insert(display.clone()) {
            return;
        }
        listing.items.push(InputItem {
            index: 0,
            display,
            rel_path: rel,
            location: InputLocation::S3 {
                bucket: self.bucket.clone(),
                key,
            },
            version,
        });
    }
}

fn is_match(m: &GlobMatcher, rel: &str) -> bool {
    m.is_match(rel) || m.is_match(super::local_glob::lowercase_extension(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(input: &S3Input, keys: &[&str], exclude: &[&str]) -> Listing {
        let exclude = super::super::local_glob::exclude_set(
            &exclude.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let mut listing = Listing::default();
        let mut seen = HashSet::new();
        for k in keys {
            input.add(k.to_string(), None, &exclude, &mut listing, &mut seen);
        }
        listing
    }

    #[test]
    fn skips_folder_markers_non_images_and_excluded_keys() {
        let input = S3Input::new("cat", "p/", None).unwrap();
        let keys = [
            "p/",
            "p/a/",
            "p/a/1.jpg",
            "p/a/notes.txt",
            "p/b/2.PNG",
            "p/b/2_thumb.png",
        ];
        let l = classify(&input, &keys, &["**/*_thumb.*"]);
        let rels: Vec<_> = l.items.iter().map(|i| i.rel_path.as_str()).collect();
        assert_eq!(rels, ["a/1.jpg", "b/2.PNG"]);
        assert_eq!(l.items[0].display, "s3://cat/p/a/1.jpg");
        assert_eq!(
            (l.skipped_folder_markers, l.skipped_non_images, l.excluded),
            (2, 1, 1)
        );
    }

    #[test]
    fn glob_matches_below_the_prefix() {
        let input = S3Input::new("cat", "p/", Some("**/*.jpg")).unwrap();
        let l = classify(&input, &["p/x.jpg", "p/a/b/y.JPG", "p/z.png"], &[]);
        let rels: Vec<_> = l.items.iter().map(|i| i.rel_path.as_str()).collect();
        assert_eq!(rels, ["x.jpg", "a/b/y.JPG"]);
        // A non-matching key is not a skipped image; it simply is not an input.
        assert_eq!(l.skipped_non_images, 0);
    }

    #[test]
    fn hostile_keys_keep_their_relative_path_for_the_plan_to_refuse() {
        let input = S3Input::new("cat", "p/", None).unwrap();
        let l = classify(&input, &["p/../../etc/x.jpg", "p//abs.jpg"], &[]);
        let rels: Vec<_> = l.items.iter().map(|i| i.rel_path.as_str()).collect();
        assert_eq!(rels, ["../../etc/x.jpg", "/abs.jpg"]);
    }
}
