//! What this AWS account can actually use: Bedrock's control plane (`ListFoundationModels` with
//! lifecycle status, `ListInferenceProfiles`, `GetFoundationModelAvailability`) asked about every
//! catalog model in the region a run would call it in (the run's region, or another that
//! `aws.regions` allows: a control-plane client per region), and each model's standing:
//! available, legacy, not enabled (with the console step that enables it), not offered. The only
//! module that imports the control-plane SDK; `retouch models --account` and `retouch check
//! --account` print it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aws_sdk_bedrock::types::{
    AuthorizationStatus, EntitlementAvailability, FoundationModelLifecycleStatus,
    RegionAvailability,
};

use crate::catalog::{Catalog, ModelEntry};

/// A catalog model's standing in this account and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Listed, active, and this account may invoke it.
    Available,
    /// Listed as legacy: it still works, until its end of life (`None`: not announced).
    Legacy { end_of_life: Option<String> },
    /// Offered here, but this account may not invoke it yet; `why` says what is missing.
    NotEnabled { why: String },
    /// Not offered in this region (or, for a model invoked through an inference profile, no
    /// such profile here).
    NotOffered,
    /// The control plane did not say (`why`: the error).
    Unknown { why: String },
}

impl Standing {
    /// Whether a run may expect calls to this model to be accepted.
    pub fn usable(&self) -> bool {
        matches!(self, Standing::Available | Standing::Legacy { .. })
    }

    /// The short word the table prints.
    pub fn word(&self) -> &'static str {
        match self {
            Standing::Available => "available",
            Standing::Legacy { .. } => "legacy",
            Standing::NotEnabled { .. } => "not enabled",
            Standing::NotOffered => "not offered here",
            Standing::Unknown { .. } => "unknown",
        }
    }
}

impl fmt::Display for Standing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Standing::Legacy {
                end_of_life: Some(d),
            } => write!(f, "legacy (end of life {d})"),
            Standing::NotEnabled { why } => write!(f, "not enabled: {why}"),
            Standing::Unknown { why } => write!(f, "unknown: {why}"),
            other => f.write_str(other.word()),
        }
    }
}

/// One catalog model and its standing.
#[derive(Debug, Clone)]
pub struct ModelAccess {
    pub alias: String,
    pub id: String,
    /// The region it was asked about: where a run would call it.
    pub region: String,
    pub standing: Standing,
}

/// Why the control plane could not be asked at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot list Bedrock's models in {region}: {detail}")]
pub struct SurveyError {
    pub region: String,
    pub detail: String,
}

/// The console step that enables a model.
pub fn enable_hint(entry: &ModelEntry, region: &str) -> String {
    format!(
        "open the Bedrock console in {region}, Model access (or Model catalog), and request or \
         enable access to {} (`{}`); third-party models also need their AWS Marketplace \
         subscription accepted",
        entry.alias, entry.id
    )
}

/// Asks, for a run in `region` allowed to call models in `allowed` (`aws.regions`; empty: the
/// run region's geography), each model's region's control plane about it: one client per region
/// (`profile` and endpoint from the standard chain). A model the run may call nowhere is not
/// offered. Models come back in catalog order.
pub async fn survey_regions(
    catalog: &Catalog,
    region: &str,
    allowed: &[String],
    profile: Option<&str>,
) -> Result<Vec<ModelAccess>, SurveyError> {
    let mut by_region: BTreeMap<&str, Vec<&ModelEntry>> = BTreeMap::new();
    let mut nowhere = Vec::new();
    for entry in surveyed(catalog) {
        match entry.call_region(region, allowed) {
            Some(r) => by_region.entry(r).or_default().push(entry),
            None => nowhere.push(ModelAccess {
                alias: entry.alias.clone(),
                id: entry.id.clone(),
                region: region.to_owned(),
                standing: Standing::NotOffered,
            }),
        }
    }
    let mut found = nowhere;
    for (r, entries) in by_region {
        let client = client(r, profile).await;
        found.extend(survey_entries(&client, entries, r).await?);
    }
    let order: BTreeMap<&str, usize> = catalog
        .entries()
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    found.sort_by_key(|m| order.get(m.id.as_str()).copied().unwrap_or(usize::MAX));
    Ok(found)
}

/// The catalog models worth asking about: those that can be routed or grade.
fn surveyed(catalog: &Catalog) -> impl Iterator<Item = &ModelEntry> {
    catalog
        .entries()
        .iter()
        .filter(|e| !e.specs.is_empty() || e.tokens.is_some())
}

/// Asks the control plane of `client`'s region about every catalog model that can be routed
/// or grade (image-editing models and graders).
pub async fn survey(
    client: &aws_sdk_bedrock::Client,
    catalog: &Catalog,
    region: &str,
) -> Result<Vec<ModelAccess>, SurveyError> {
    survey_entries(client, surveyed(catalog).collect(), region).await
}

async fn survey_entries(
    client: &aws_sdk_bedrock::Client,
    entries: Vec<&ModelEntry>,
    region: &str,
) -> Result<Vec<ModelAccess>, SurveyError> {
    let failed = |e: String| SurveyError {
        region: region.to_owned(),
        detail: e,
    };
    let listed = client
        .list_foundation_models()
        .send()
        .await
        .map_err(|e| failed(sdk_detail(&e)))?;
    let mut lifecycle: BTreeMap<String, (bool, Option<String>)> = BTreeMap::new();
    for m in listed.model_summaries() {
        let (legacy, eol) = match m.model_lifecycle() {
            Some(l) => (
                *l.status() == FoundationModelLifecycleStatus::Legacy,
                l.end_of_life_time().map(|t| t.to_string()),
            ),
            None => (false, None),
        };
        lifecycle.insert(m.model_id().to_owned(), (legacy, eol));
    }
    let profiles: BTreeSet<String> = client
        .list_inference_profiles()
        .max_results(1000)
        .send()
        .await
        .map(|out| {
            out.inference_profile_summaries()
                .iter()
                .map(|p| p.inference_profile_id().to_owned())
                .collect()
        })
        .map_err(|e| failed(sdk_detail(&e)))?;
    let mut out = Vec::new();
    for entry in entries {
        let standing = match lifecycle.get(&entry.id) {
            None => Standing::NotOffered,
            Some(_) if entry.invoke_id != entry.id && !profiles.contains(&entry.invoke_id) => {
                Standing::NotOffered
            }
            Some((legacy, eol)) => match access(client, entry, region).await {
                Ok(()) if *legacy => Standing::Legacy {
                    end_of_life: eol.clone(),
                },
                Ok(()) => Standing::Available,
                Err(standing) => standing,
            },
        };
        out.push(ModelAccess {
            alias: entry.alias.clone(),
            id: entry.id.clone(),
            region: region.to_owned(),
            standing,
        });
    }
    Ok(out)
}

/// Whether this account may invoke `entry` (`GetFoundationModelAvailability`).
async fn access(
    client: &aws_sdk_bedrock::Client,
    entry: &ModelEntry,
    region: &str,
) -> Result<(), Standing> {
    let a = client
        .get_foundation_model_availability()
        .model_id(&entry.id)
        .send()
        .await
        .map_err(|e| Standing::Unknown {
            why: sdk_detail(&e),
        })?;
    if *a.region_availability() != RegionAvailability::Available {
        return Err(Standing::NotOffered);
    }
    let mut missing = Vec::new();
    if *a.authorization_status() != AuthorizationStatus::Authorized {
        missing.push("this account is not authorized for it");
    }
    if *a.entitlement_availability() != EntitlementAvailability::Available {
        missing.push("no entitlement (model access not granted)");
    }
    let agreement = a
        .agreement_availability()
        .map(|ag| ag.status().as_str().to_owned())
        .unwrap_or_default();
    if !agreement.is_empty() && agreement != "AVAILABLE" && agreement != "NOT_AVAILABLE" {
        // PENDING or ERROR: an offer was accepted but is not in force.
        missing.push("the model's agreement is not in force yet");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Standing::NotEnabled {
            why: format!("{}; {}", missing.join(", "), enable_hint(entry, region)),
        })
    }
}

/// An SDK error's code and message, without request ids.
fn sdk_detail<E, R>(e: &aws_sdk_bedrock::error::SdkError<E, R>) -> String
where
    E: aws_sdk_bedrock::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or("")
        ),
        None => aws_sdk_bedrock::error::DisplayErrorContext(e).to_string(),
    }
}

/// A control-plane client for `region` (credentials and endpoint from the standard chain, so
/// `AWS_ENDPOINT_URL_BEDROCK` points it at a double or a VPC endpoint).
pub async fn client(region: &str, profile: Option<&str>) -> aws_sdk_bedrock::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()));
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    aws_sdk_bedrock::Client::new(&loader.load().await)
}
