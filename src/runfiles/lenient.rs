//! Reading what older or hand-edited run files hold without failing on what they do not: every
//! helper here turns a value of an unexpected type into "not stated" (`None`, empty, default),
//! as `#[serde(deserialize_with)]` functions on the lenient views of the run files.
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `T` from `v` when `v` is an object (a JSON array never fills a struct by position here),
/// else `T`'s default.
pub fn view<T: DeserializeOwned + Default>(v: Value) -> T {
    if v.is_object() { serde_json::from_value(v).unwrap_or_default() } else { T::default() }
}

/// A value of type `T`, or `None` when it is of another type.
pub fn value<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(d)?).ok())
}

/// An object read as a view (`None` when it is not an object).
pub fn object<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(v.is_object().then(|| view(v)))
}

/// The strings of a list (anything else in it, or a value that is not a list, is skipped).
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    let items = v.as_array().into_iter().flatten();
    Ok(items.filter_map(Value::as_str).map(str::to_string).collect())
}

/// Every entry of a list as a view (an entry that is not an object is an empty view).
pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Array(items) => items.into_iter().map(view).collect(),
        _ => Vec::new(),
    })
}

/// Every entry of an object as a view, by key.
pub fn map<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    d: D,
) -> Result<BTreeMap<String, T>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Object(m) => m.into_iter().map(|(k, v)| (k, view(v))).collect(),
        _ => BTreeMap::new(),
    })
}

/// A number (anything else is `None`).
pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Value::deserialize(d)?.as_f64())
}

/// A count: an integer, or a number cut to one (`12.0` is 12).
pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(as_count(&Value::deserialize(d)?))
}

/// See [`count`].
pub fn as_count(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().map(|f| f as u64))
}
