//! The one JSON shape every service's messages and responses take (`keel client --json`,
//! `keel replay dump`, `outputs`, `state` queries), documented in docs/PROTOCOL.md, "JSON
//! shape". Names given as values (requests, reasons, `type` tags) are kebab-case; keys are
//! snake_case.
//!
//! - A message: `{"type": REQUEST, ...its fields}`; one that does not decode:
//!   `{"type": REQUEST, "error": WHY, "bytes": N}`.
//! - A response: `{"sequence", "correlation_id", "request", "status", "reason", "reason_code",
//!   "response", "error"}`, with `status` one of `accepted`, `rejected`, `failed`; `reason`
//!   the rejection's name (null unless rejected) and `reason_code` its number (0 unless
//!   rejected); `response` the decoded payload or null; `error` the panic text of a `failed`
//!   response, otherwise null.
//! - An enum value with fields (an event, a rejection detail): `{"type": VARIANT, ...fields}`.
//! - Fields holding a name from a fixed set ([`NAMED_FIELDS`]: `side`, `order_type`, …) are
//!   kebab-case too (`"side": "buy"`), at any depth.

use keel::engine::{Response, Status};
use serde_json::{json, Map, Value};

/// `name` in kebab-case: `PriceChanged` and `price_changed` both give `price-changed`.
pub fn kebab(name: &str) -> String {
    Kebab(name).to_string()
}

/// Displays a name in kebab-case without allocating (`Kebab("PriceChanged")` shows
/// `price-changed`): what the services' hand-written `Serialize` impls write.
#[derive(Debug, Clone, Copy)]
pub struct Kebab<'a>(pub &'a str);

impl std::fmt::Display for Kebab<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let mut after_dash = true;
        for c in self.0.chars() {
            if c == '_' || c == ' ' || c == '-' {
                f.write_char('-')?;
                after_dash = true;
                continue;
            }
            if c.is_ascii_uppercase() && !after_dash {
                f.write_char('-')?;
            }
            f.write_char(c.to_ascii_lowercase())?;
            after_dash = false;
        }
        Ok(())
    }
}

/// Fields whose string values name a variant of a fixed set, written in kebab-case.
pub const NAMED_FIELDS: [&str; 6] = [
    "side",
    "taker_side",
    "order_type",
    "reason",
    "status",
    "cancel_reason",
];

/// Rewrites the string values of [`NAMED_FIELDS`] in `value`, at any depth, in kebab-case.
pub fn kebab_named_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                match field {
                    Value::String(name) if NAMED_FIELDS.contains(&key.as_str()) => {
                        *name = kebab(name);
                    }
                    other => kebab_named_fields(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(kebab_named_fields),
        _ => {}
    }
}

/// `fields` (an object; anything else goes under `value`) with `"type": type_name` first.
pub fn with_type(type_name: &str, fields: Value) -> Value {
    let mut object = Map::new();
    object.insert("type".into(), json!(type_name));
    match fields {
        Value::Object(map) => object.extend(map.into_iter().filter(|(k, _)| k != "type")),
        Value::Null => {}
        other => {
            object.insert("value".into(), other);
        }
    }
    let mut object = Value::Object(object);
    kebab_named_fields(&mut object);
    object
}

/// A serde enum value as serialized by default (`{"Variant": {...}}`, `{"Variant": x}` or
/// `"Variant"`) as a tagged object: `{"type": "variant", ...}`. Other values are returned as
/// they are.
pub fn tagged(value: Value) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (variant, fields) = map.into_iter().next().expect("one entry");
            with_type(&kebab(&variant), fields)
        }
        Value::String(variant) => with_type(&kebab(&variant), Value::Null),
        other => other,
    }
}

/// The keys of every response description, sorted.
pub const RESPONSE_KEYS: [&str; 8] = [
    "correlation_id",
    "error",
    "reason",
    "reason_code",
    "request",
    "response",
    "sequence",
    "status",
];

/// The one response shape. `request` is the name of the request answered, `reason_name`
/// names a rejection code, and `body` decodes an accepted or rejected response's payload.
pub fn response(
    request: &str,
    response: &Response<'_>,
    reason_name: impl Fn(u32) -> Option<&'static str>,
    body: impl Fn(&Response<'_>) -> Value,
) -> Value {
    let h = &response.header;
    let (status, reason, mut payload, error) = match h.status {
        Status::Accepted => ("accepted", Value::Null, body(response), Value::Null),
        Status::Rejected => {
            let name = reason_name(h.reason).map_or_else(|| "unknown".to_owned(), kebab);
            ("rejected", json!(name), body(response), Value::Null)
        }
        Status::Failed => {
            let text = String::from_utf8_lossy(response.payload);
            ("failed", Value::Null, Value::Null, json!(text))
        }
        Status::AlreadyAnswered => {
            let text = "applied before; its reply is no longer held";
            ("already-answered", Value::Null, Value::Null, json!(text))
        }
    };
    kebab_named_fields(&mut payload);
    let reason_code = if h.status == Status::Rejected {
        h.reason
    } else {
        0
    };
    json!({
        "sequence": h.sequence,
        "correlation_id": h.correlation_id,
        "request": request,
        "status": status,
        "reason": reason,
        "reason_code": reason_code,
        "response": payload,
        "error": error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_kebab_case() {
        assert_eq!(kebab("PriceChanged"), "price-changed");
        assert_eq!(kebab("place_order"), "place-order");
        assert_eq!(kebab("add-book"), "add-book");
        assert_eq!(kebab("Book"), "book");
    }

    #[test]
    fn the_services_enums_serialize_in_kebab_case_themselves() {
        use crate::bookstore::{OrderStatus, RejectReason as BookstoreReason};
        use crate::exchange::{CancelReason, Event, OrderType, RejectReason, Side};
        assert_eq!(Kebab("FokUnfillable").to_string(), "fok-unfillable");
        assert_eq!(json!(OrderStatus::Open), json!("open"));
        assert_eq!(json!(BookstoreReason::UnknownBook), json!("unknown-book"));
        assert_eq!(json!(RejectReason::InvalidPrice), json!("invalid-price"));
        assert_eq!(json!(Side::Buy), json!("buy"));
        assert_eq!(json!(OrderType::Gtc), json!("gtc"));
        assert_eq!(json!(CancelReason::Unfilled), json!("unfilled"));
        let rejected = Event::Rejected {
            order_id: 1,
            reason: RejectReason::NotOrderOwner,
        };
        assert_eq!(
            json!(rejected),
            json!({"rejected": {"order_id": 1, "reason": "not-order-owner"}})
        );
    }

    #[test]
    fn enum_values_become_tagged_objects() {
        assert_eq!(
            tagged(json!({"Trade": {"qty": 1}})),
            json!({"type": "trade", "qty": 1})
        );
        assert_eq!(tagged(json!("Open")), json!({"type": "open"}));
        assert_eq!(
            tagged(json!({"Book": 3})),
            json!({"type": "book", "value": 3})
        );
        assert_eq!(tagged(json!([1])), json!([1]));
        assert_eq!(
            tagged(json!({"Accepted": {"side": "Buy", "order_type": "Gtc", "title": "Dune"}})),
            json!({"type": "accepted", "side": "buy", "order_type": "gtc", "title": "Dune"})
        );
    }
}
