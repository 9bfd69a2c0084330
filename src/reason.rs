//! The `reason` column's vocabulary: every value a report row can carry, in one enum.
//!
//! The reason is the report's contract with its users (they filter and group by it), so it is a
//! closed list: routes (why this model), fallbacks (why not the cheaper remote model), and
//! failures (why the image failed). Every module that can fail an image names its failures with
//! a variant here; nothing compares reason strings. The README lists exactly these values (a test
//! keeps the two in step). Adding a reason: a variant here, its text, and a line in the README.

use std::fmt;

/// What a reason tells, which decides which README list it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Why this route was taken.
    Route,
    /// Why a step fell back from a remote model.
    Fallback,
    /// Why an image (or step) failed.
    Failure,
}

macro_rules! reasons {
    ($( $kind:ident $variant:ident = $text:literal, $doc:literal; )*) => {
        /// One value of the report's `reason` column.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $( #[doc = $doc] $variant, )*
        }

        impl Reason {
            /// Every reason, routes first, then fallbacks, then failures.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),*];

            /// The kebab-case text of the report.
            pub fn as_str(self) -> &'static str {
                match self { $( Reason::$variant => $text, )* }
            }

            pub fn kind(self) -> Kind {
                match self { $( Reason::$variant => Kind::$kind, )* }
            }
        }
    };
}

reasons! {
    Route OnlyPermitted = "only-permitted", "The only permitted model.";
    Route Cheapest = "cheapest", "The cheapest of several permitted models that can take the image.";
    Route NextCheapest = "next-cheapest", "A cheaper model failed for this image; this is the next.";
    Route CacheHit = "cache-hit", "An earlier run's result, reused: nothing ran, nothing was billed.";
    Route Escalated = "escalated", "Scored below `escalate.below`: another model redid the step (outcome superseded).";
    Route EscalationPassed = "escalation-passed", "Redone by this model after a cheaper result scored too low; passed.";
    Route EscalationBest = "escalation-best", "No result passed `escalate.below`; this best-scoring one is kept.";
    Fallback FallbackNoCredentials = "fallback-no-credentials", "No AWS credentials were found.";
    Fallback FallbackBudget = "fallback-budget", "A budget (run, image or day) could not afford it.";
    Fallback FallbackAccessDenied = "fallback-access-denied", "The account may not use the model.";
    Fallback FallbackEndOfLife = "fallback-end-of-life", "Every permitted model is past end of life.";
    Fallback FallbackRegion = "fallback-region", "No permitted model is offered in the region.";
    Fallback FallbackTooLarge = "fallback-too-large", "The image is too large for every model.";
    Fallback FallbackTooSmall = "fallback-too-small", "The image is too small for every model.";
    Fallback FallbackAspectRatio = "fallback-aspect-ratio", "No model takes this aspect ratio.";
    Fallback FallbackPromptTooLong = "fallback-prompt-too-long", "The prompt is longer than the model takes.";
    Fallback FallbackThrottled = "fallback-throttled", "Still throttled after every retry.";
    Fallback FallbackModelNotReady = "fallback-model-not-ready", "The model was not ready.";
    Fallback FallbackServerError = "fallback-server-error", "Bedrock kept answering 5xx.";
    Fallback FallbackTimeout = "fallback-timeout", "The call kept timing out.";
    Fallback FallbackNetwork = "fallback-network", "The network kept failing.";
    Fallback FallbackModelNotFound = "fallback-model-not-found", "The model id is unknown here.";
    Fallback FallbackModelInvalid = "fallback-model-invalid", "The model id is retired or invalid.";
    Fallback FallbackModelUnavailable = "fallback-model-unavailable", "The model's circuit is open.";
    Fallback FallbackQuotaExceeded = "fallback-quota-exceeded", "A service quota was exceeded.";
    Fallback FallbackContentFiltered = "fallback-content-filtered", "A content filter blocked it.";
    Fallback FallbackValidation = "fallback-validation", "The model rejected the request.";
    Fallback FallbackModelError = "fallback-model-error", "The model failed on this input.";
    Fallback FallbackBadResponse = "fallback-bad-response", "The answer could not be read.";
    Fallback FallbackClientConfig = "fallback-client-config", "Client configuration or credentials.";
    Fallback FallbackInterrupted = "fallback-interrupted", "Ctrl-C came while the call waited its turn.";
    Failure EmptyFile = "empty-file", "The input has 0 bytes.";
    Failure NotAnImage = "not-an-image", "The bytes match no supported format.";
    Failure Truncated = "truncated", "The image data ends early.";
    Failure CorruptImage = "corrupt-image", "The image data is corrupt or unsupported.";
    Failure TooLarge = "too-large", "Over `limits.max_megapixels`, or a file bigger than that allows.";
    Failure OversizedMetadata = "oversized-metadata", "An embedded colour profile over 4 MiB.";
    Failure ReadFailed = "read-failed", "The input could not be read.";
    Failure BrokenLink = "broken-link", "A symbolic link that leads nowhere (or loops).";
    Failure NotAFile = "not-a-file", "A FIFO, socket or device matched by a glob.";
    Failure InputChanged = "input-changed", "The input changed while the run was going.";
    Failure S3NoSuchBucket = "s3-no-such-bucket", "The S3 bucket does not exist.";
    Failure S3AccessDenied = "s3-access-denied", "S3 refused access.";
    Failure S3NoSuchKey = "s3-no-such-key", "The S3 object vanished.";
    Failure S3Failed = "s3-failed", "An S3 request failed after its retries.";
    Failure OpFailed = "op-failed", "A local operation failed.";
    Failure EncodeFailed = "encode-failed", "The output could not be encoded.";
    Failure WriteFailed = "write-failed", "The output could not be written.";
    Failure OutputCollision = "output-collision", "Another input writes the same output.";
    Failure UnsafeOutputPath = "unsafe-output-path", "The output path would leave the output folder.";
    Failure CacheUnreadable = "cache-unreadable", "A cached result vanished or is damaged.";
    Failure UpstreamFailed = "upstream-failed", "An earlier step of the image failed.";
    Failure MaskUnreadable = "mask-unreadable", "The step's mask file is missing, unreadable, or not the image's shape.";
    Failure NothingGenerated = "nothing-generated", "generate made no image (its fallback skipped it): nothing to work on.";
    Failure InternalError = "internal-error", "A bug in retouch (a panic in one image's work).";
}

impl Reason {
    /// The reason whose text is `s`.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// Whether the step fell back from a remote model.
    pub fn is_fallback(self) -> bool {
        self.kind() == Kind::Fallback
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn texts_are_unique_kebab_case_and_parse_back() {
        let texts: BTreeSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(texts.len(), Reason::ALL.len(), "every text is unique");
        for r in Reason::ALL {
            let s = r.as_str();
            let kebab = !s.is_empty()
                && !s.starts_with('-')
                && !s.ends_with('-')
                && !s.contains("--")
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            assert!(kebab, "{s}");
            assert_eq!(Reason::parse(s), Some(*r));
            assert_eq!(r.is_fallback(), s.starts_with("fallback-"), "{s}");
        }
        assert_eq!(Reason::parse("nope"), None);
    }

    /// The README's three lists of reasons (routes in the report table, then "Reasons for
    /// falling back:" and "Reasons for failures:") name exactly these values.
    #[test]
    fn the_readme_lists_exactly_these_reasons() {
        let readme = include_str!("../README.md");
        let listed = |kind: Kind| -> BTreeSet<&str> {
            Reason::ALL
                .iter()
                .filter(|r| r.kind() == kind)
                .map(|r| r.as_str())
                .collect()
        };
        let route_line = readme
            .lines()
            .find(|l| l.starts_with("| `reason` |"))
            .expect("the report table has a reason row");
        let in_readme = |text: &str| -> BTreeSet<String> {
            text.split('`')
                .skip(1)
                .step_by(2)
                .filter(|s| Reason::parse(s).is_some() || s.contains('-') && !s.contains(' '))
                .map(str::to_owned)
                .collect()
        };
        let section = |start: &str| -> String {
            let from = readme
                .find(start)
                .unwrap_or_else(|| panic!("README has `{start}`"));
            readme[from..].split("\n\n").next().unwrap().to_owned()
        };
        let routes: BTreeSet<String> = in_readme(route_line)
            .into_iter()
            .filter(|s| Reason::parse(s).is_some_and(|r| r.kind() == Kind::Route))
            .collect();
        let as_set = |s: BTreeSet<&str>| s.into_iter().map(str::to_owned).collect::<BTreeSet<_>>();
        assert_eq!(routes, as_set(listed(Kind::Route)));
        assert_eq!(
            in_readme(&section("Reasons for falling back:")),
            as_set(listed(Kind::Fallback))
        );
        assert_eq!(
            in_readme(&section("Reasons for failures:")),
            as_set(listed(Kind::Failure))
        );
    }
}
