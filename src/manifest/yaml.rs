//! YAML text → `serde_yaml::Value`, as `serde_yaml::from_str` does, except that an integer too
//! large for 64 bits is kept instead of failing the whole document.
//!
//! serde_yaml's own `Value` refuses integers it can only read as 128-bit ("u128 is not
//! supported"), which stopped validation at the first one and hid every other problem in the
//! file. Here such an integer becomes its decimal digits tagged [`BIG_INT_TAG`], and the checks
//! report it as out of range at its key. Tags, duplicate keys and nulls behave as in serde_yaml.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};

/// The tag of an integer too large for 64 bits; its value is the integer's decimal digits.
pub(super) const BIG_INT_TAG: &str = "!retouch/integer-over-64-bits";

/// Parses one YAML document into a `Value`.
pub(super) fn from_str(text: &str) -> Result<Value, serde_yaml::Error> {
    Lenient::deserialize(serde_yaml::Deserializer::from_str(text)).map(|v| v.0)
}

/// The digits of an integer [`from_str`] kept because it does not fit in 64 bits.
pub(super) fn big_int(v: &Value) -> Option<&str> {
    let Value::Tagged(t) = v else { return None };
    let digits = t.value.as_str().filter(|_| t.tag == BIG_INT_TAG)?;
    let is_integer = digits
        .strip_prefix('-')
        .unwrap_or(digits)
        .bytes()
        .all(|b| b.is_ascii_digit());
    (is_integer && digits.parse::<i64>().is_err() && digits.parse::<u64>().is_err())
        .then_some(digits)
}

/// A `Value` deserialized by [`Visitor`].
struct Lenient(Value);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lenient, D::Error> {
        d.deserialize_any(Visitor).map(Lenient)
    }
}

/// serde_yaml's `Value` visitor, plus 128-bit integers.
struct Visitor;

fn big<E>(digits: String) -> Result<Value, E> {
    let value = Value::String(digits);
    let tag = Tag::new(BIG_INT_TAG);
    Ok(Value::Tagged(Box::new(TaggedValue { tag, value })))
}

impl<'de> de::Visitor<'de> for Visitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Number(u.into()))
    }

    fn visit_i128<E>(self, i: i128) -> Result<Value, E> {
        big(i.to_string())
    }

    fn visit_u128<E>(self, u: u128) -> Result<Value, E> {
        big(u.to_string())
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Number(f.into()))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Lenient::deserialize(d).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Lenient(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Mapping::new();
        while let Some(Lenient(key)) = map.next_key()? {
            if out.contains_key(&key) {
                // Worded as serde_yaml words it: the caller looks for "duplicate entry".
                let key = serde_yaml::to_string(&key).unwrap_or_default();
                let message = format!("duplicate entry with key {:?}", key.trim_end());
                return Err(de::Error::custom(message));
            }
            let Lenient(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Mapping(out))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, contents): (String, _) = data.variant()?;
        if tag.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        let Lenient(value) = contents.newtype_variant()?;
        let tag = Tag::new(tag);
        Ok(Value::Tagged(Box::new(TaggedValue { tag, value })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_serde_yaml_for_ordinary_documents() {
        let text = "a: 1\nb: [x, -2, 2.5, .inf, ~, true]\nc: !t {d: e}\n'': 18446744073709551615\n";
        let ours = from_str(text).unwrap();
        let theirs: Value = serde_yaml::from_str(text).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(from_str("").unwrap(), Value::Null);
    }

    #[test]
    fn keeps_integers_over_64_bits() {
        let v = from_str("n: 99999999999999999999999\nm: -99999999999999999999999\n").unwrap();
        assert_eq!(big_int(&v["n"]), Some("99999999999999999999999"));
        assert_eq!(big_int(&v["m"]), Some("-99999999999999999999999"));
        assert!(serde_yaml::from_str::<Value>("n: 99999999999999999999999").is_err());
        // Written by hand, the tag is an ordinary tag unless it holds such an integer.
        let spoof = from_str("n: !retouch/integer-over-64-bits '5'\n").unwrap();
        assert_eq!(big_int(&spoof["n"]), None);
    }

    #[test]
    fn duplicate_keys_fail_as_in_serde_yaml() {
        let e = from_str("a: 1\na: 2\n").unwrap_err();
        assert!(
            e.to_string().starts_with("duplicate entry with key \"a\""),
            "{e}"
        );
    }
}
