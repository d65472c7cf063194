//! The JSON results, built with serde_json (keys in the order written here).

use serde_json::{Map, Value};

use super::model::{capability_key, Measured, Report, ScenarioResult, CAPABILITY_ROWS};
use super::stats::Sample;

/// A string.
fn s(v: impl ToString) -> Value {
    Value::String(v.to_string())
}

/// An object, keys in the order given.
fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<String, Value>>())
}

/// A number; non-finite values (and `None`) are `null`.
fn num(n: impl Into<Option<f64>>) -> Value {
    n.into().filter(|v| v.is_finite()).map_or(Value::Null, Value::from)
}

/// The whole report as JSON.
pub fn report(r: &Report) -> Value {
    let m = &r.meta;
    let p = &r.plan;
    obj([
        ("tool", s("sipstls-eval")),
        ("version", s(m.version)),
        ("date_utc", s(&m.date_utc)),
        ("command", s(&m.command)),
        ("cores", m.cores.map_or(Value::Null, Value::from)),
        ("cpu", s(&m.cpu)),
        ("os", s(&m.os)),
        ("profile", s(m.profile)),
        ("optimised", Value::Bool(m.optimised)),
        ("wall_seconds", num(r.wall.as_secs_f64())),
        ("load_average_start", num(m.load.0)),
        ("load_average_end", num(m.load.1)),
        (
            "plan",
            obj([
                ("quick", Value::Bool(p.quick)),
                ("repetitions", Value::from(p.reps)),
                ("warmup_handshakes", Value::from(p.warmup)),
                ("full_handshakes_ecdsa", Value::from(p.handshakes)),
                ("full_handshakes_rsa", Value::from(p.rsa_handshakes)),
                ("resumed_handshakes", Value::from(p.resumed)),
                ("records_1k", Value::from(p.records_1k)),
                ("records_16k", Value::from(p.records_16k)),
                ("idle_connections", Value::from(p.idle_connections)),
            ]),
        ),
        ("backends", Value::Array(r.backends.iter().map(backend).collect())),
        ("results", Value::Array(r.results.iter().map(result).collect())),
        ("overhead", Value::Array(r.overhead.iter().map(overhead).collect())),
        ("crypto", Value::Array(r.crypto.iter().map(crypto).collect())),
    ])
}

fn overhead(o: &Result<super::overhead::OverheadRow, String>) -> Value {
    match o {
        Err(e) => obj([("error", s(e))]),
        Ok(o) => {
            let instr = match &o.instructions {
                None => Value::Null,
                Some(Err(e)) => obj([("error", s(e))]),
                Some(Ok((ours, theirs))) => obj([
                    ("sipstls_per_op", num(*ours)),
                    ("native_per_op", num(*theirs)),
                    ("overhead", num(ours / theirs - 1.0)),
                    ("goal", num(super::overhead::goal(o.work))),
                ]),
            };
            obj([
                ("backend", s(&o.backend)),
                ("work", s(format!("{:?}", o.work))),
                ("label", s(super::overhead::work_label(o.work, &o.backend))),
                ("sipstls_ns_per_op_median", num(o.sipstls_ns.median())),
                ("native_ns_per_op_median", num(o.native_ns.median())),
                ("time_ratio", num(o.time_ratio())),
                ("instructions", instr),
            ])
        }
    }
}

fn crypto(c: &Result<super::crypto::CryptoTimes, String>) -> Value {
    match c {
        Err(e) => obj([("error", s(e))]),
        Ok(c) => obj([
            ("backend", s(&c.backend)),
            ("x25519_keygen_agree_us", num(c.x25519_us)),
            ("ecdsa_p256_sign_us", num(c.ecdsa_sign_us)),
            ("rsa2048_pss_sign_us", num(c.rsa_sign_us)),
        ]),
    }
}

fn backend(b: &super::model::BackendEntry) -> Value {
    match &b.status {
        Err(why) => obj([("name", s(&b.name)), ("built", Value::Bool(false)), ("error", s(why))]),
        Ok(f) => {
            let caps = CAPABILITY_ROWS
                .iter()
                .map(|(flag, label)| (capability_key(label), Value::Bool(f.caps.contains(*flag))))
                .collect();
            obj([
                ("name", s(f.info.name)),
                ("built", Value::Bool(true)),
                ("library", s(&f.info.library)),
                ("license", s(f.info.license)),
                ("capabilities", Value::Object(caps)),
            ])
        }
    }
}

fn result(res: &ScenarioResult) -> Value {
    let (server_unit, client_unit) = res.scenario.units();
    let per_backend = res
        .outcomes
        .iter()
        .map(|(name, outcome)| {
            let value = match outcome {
                Ok(m) => measured(m),
                Err(e) => obj([("error", s(e))]),
            };
            (name.clone(), value)
        })
        .collect();
    obj([
        ("id", s(res.scenario.id)),
        ("label", s(res.scenario.label)),
        ("iterations_per_repetition", Value::from(res.scenario.iterations)),
        ("server_unit", s(server_unit)),
        ("client_unit", client_unit.map_or(Value::Null, s)),
        ("record_bytes", res.scenario.record_size().map_or(Value::Null, Value::from)),
        ("backends", Value::Object(per_backend)),
    ])
}

fn measured(m: &Measured) -> Value {
    obj([
        ("server", sample(&m.server)),
        ("client", m.client.as_ref().map_or(Value::Null, sample)),
        ("negotiated", s(&m.negotiated)),
    ])
}

fn sample(s: &Sample) -> Value {
    obj([
        ("median", num(s.median())),
        ("min", num(s.min())),
        ("max", num(s.max())),
        ("values", Value::Array(s.values().iter().map(|v| num(*v)).collect())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_order() {
        assert_eq!(num(f64::INFINITY), Value::Null);
        assert_eq!(num(None), Value::Null);
        assert_eq!(num(1.5), json!(1.5));
        let o = obj([("b", json!(1)), ("a", json!(2))]);
        assert_eq!(serde_json::to_string(&o).unwrap(), r#"{"b":1,"a":2}"#, "keys in the order written");
    }
}
