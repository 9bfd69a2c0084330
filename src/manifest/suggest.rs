//! "Did you mean …?" for near-miss names (keys, ops, models, formats).
//!
//! Pure string similarity over the candidates a check passes in; no knowledge of the format.

/// Below this Jaro-Winkler similarity a candidate is not worth suggesting.
const THRESHOLD: f64 = 0.8;

/// The candidate closest to `given` (case-insensitively), if any is close enough.
pub(super) fn closest<'a, I>(given: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let given = given.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (score(&given, &c.to_lowercase()), c))
        .filter(|(s, _)| *s >= THRESHOLD)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Jaro-Winkler favours shared prefixes (`remove-backgrund` → `remove-bg`); Damerau-Levenshtein
/// catches transpositions in short words (`fomrat` → `format`).
fn score(a: &str, b: &str) -> f64 {
    strsim::jaro_winkler(a, b).max(strsim::normalized_damerau_levenshtein(a, b))
}

/// `did you mean `x`? <rest>` when there is a close candidate, else just `rest`.
pub(super) fn help<'a, I>(given: &str, candidates: I, rest: String) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    match closest(given, candidates) {
        Some(c) => format!("did you mean `{c}`? {rest}"),
        None => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let ops = ["remove-bg", "fix-lighting", "upscale"];
        assert_eq!(closest("remove-backgrund", ops), Some("remove-bg"));
        assert_eq!(closest("upscal", ops), Some("upscale"));
        assert_eq!(closest("FIX-LIGHTING", ops), Some("fix-lighting"));
        assert_eq!(closest("colorize", ops), None);
        let keys = ["format", "dir", "quality"];
        assert_eq!(closest("fomrat", keys), Some("format"));
        assert_eq!(closest("zzz", keys), None);
    }

    #[test]
    fn help_prefixes_the_suggestion() {
        let h = help("qualty", ["quality"], "valid keys: quality".into());
        assert_eq!(h, "did you mean `quality`? valid keys: quality");
        assert_eq!(help("xyz", ["quality"], "rest".into()), "rest");
    }
}
