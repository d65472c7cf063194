//! The JSON results, written by a small hand-rolled serializer: the output is a handful of
//! objects, arrays, strings and numbers, which does not justify adding serde and
//! serde_json to the conformance crate's dependencies.

use std::fmt::Write as _;

use super::model::{capability_key, Measured, Report, ScenarioResult, CAPABILITY_ROWS};
use super::stats::Sample;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number; non-finite values are written as `null`.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, keys in insertion order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    /// An object from `(key, value)` pairs.
    pub fn obj<const N: usize>(pairs: [(&str, Json); N]) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// Pretty-printed text (two-space indent) with a final newline.
    pub fn to_pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, indent: usize) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) if n.is_finite() => {
                let _ = write!(out, "{n}");
            }
            Json::Num(_) => out.push_str("null"),
            Json::Str(s) => write_string(out, s),
            Json::Arr(items) => write_seq(out, indent, '[', ']', items.iter().map(|v| (None, v))),
            Json::Obj(pairs) => write_seq(out, indent, '{', '}', pairs.iter().map(|(k, v)| (Some(k.as_str()), v))),
        }
    }
}

fn write_seq<'a>(
    out: &mut String,
    indent: usize,
    open: char,
    close: char,
    items: impl ExactSizeIterator<Item = (Option<&'a str>, &'a Json)>,
) {
    out.push(open);
    if items.len() == 0 {
        out.push(close);
        return;
    }
    for (i, (key, value)) in items.enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&"  ".repeat(indent + 1));
        if let Some(k) = key {
            write_string(out, k);
            out.push_str(": ");
        }
        value.write(out, indent + 1);
    }
    out.push('\n');
    out.push_str(&"  ".repeat(indent));
    out.push(close);
}

/// Writes `s` as a JSON string literal.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn opt_num(n: Option<f64>) -> Json {
    n.map_or(Json::Null, Json::Num)
}

/// The whole report as JSON.
pub fn report(r: &Report) -> Json {
    let m = &r.meta;
    let p = &r.plan;
    Json::obj([
        ("tool", Json::str("sipstls-eval")),
        ("version", Json::str(m.version)),
        ("date_utc", Json::str(&m.date_utc)),
        ("command", Json::str(&m.command)),
        ("cores", opt_num(m.cores.map(|c| c as f64))),
        ("cpu", Json::str(&m.cpu)),
        ("os", Json::str(&m.os)),
        ("profile", Json::str(m.profile)),
        ("optimised", Json::Bool(m.optimised)),
        ("wall_seconds", Json::Num(r.wall.as_secs_f64())),
        ("load_average_start", opt_num(m.load.0)),
        ("load_average_end", opt_num(m.load.1)),
        (
            "plan",
            Json::obj([
                ("quick", Json::Bool(p.quick)),
                ("repetitions", Json::Num(p.reps as f64)),
                ("warmup_handshakes", Json::Num(p.warmup as f64)),
                ("full_handshakes_ecdsa", Json::Num(p.handshakes as f64)),
                ("full_handshakes_rsa", Json::Num(p.rsa_handshakes as f64)),
                ("resumed_handshakes", Json::Num(p.resumed as f64)),
                ("records_1k", Json::Num(p.records_1k as f64)),
                ("records_16k", Json::Num(p.records_16k as f64)),
                ("idle_connections", Json::Num(p.idle_connections as f64)),
            ]),
        ),
        ("backends", Json::Arr(r.backends.iter().map(backend).collect())),
        ("results", Json::Arr(r.results.iter().map(result).collect())),
        ("overhead", Json::Arr(r.overhead.iter().map(overhead).collect())),
        ("crypto", Json::Arr(r.crypto.iter().map(crypto).collect())),
    ])
}

fn overhead(o: &Result<super::overhead::OverheadRow, String>) -> Json {
    match o {
        Err(e) => Json::obj([("error", Json::str(e))]),
        Ok(o) => {
            let instr = match &o.instructions {
                None => Json::Null,
                Some(Err(e)) => Json::obj([("error", Json::str(e))]),
                Some(Ok((ours, theirs))) => Json::obj([
                    ("sipstls_per_op", Json::Num(*ours)),
                    ("native_per_op", Json::Num(*theirs)),
                    ("overhead", Json::Num(ours / theirs - 1.0)),
                    ("goal", Json::Num(super::overhead::goal(o.work))),
                ]),
            };
            Json::obj([
                ("backend", Json::str(&o.backend)),
                ("work", Json::str(format!("{:?}", o.work))),
                ("label", Json::str(super::overhead::work_label(o.work, &o.backend))),
                ("sipstls_ns_per_op_median", Json::Num(o.sipstls_ns.median())),
                ("native_ns_per_op_median", Json::Num(o.native_ns.median())),
                ("time_ratio", Json::Num(o.time_ratio())),
                ("instructions", instr),
            ])
        }
    }
}

fn crypto(c: &Result<super::crypto::CryptoTimes, String>) -> Json {
    match c {
        Err(e) => Json::obj([("error", Json::str(e))]),
        Ok(c) => Json::obj([
            ("backend", Json::str(&c.backend)),
            ("x25519_keygen_agree_us", Json::Num(c.x25519_us)),
            ("ecdsa_p256_sign_us", Json::Num(c.ecdsa_sign_us)),
            ("rsa2048_pss_sign_us", Json::Num(c.rsa_sign_us)),
        ]),
    }
}

fn backend(b: &super::model::BackendEntry) -> Json {
    match &b.status {
        Err(why) => Json::obj([("name", Json::str(&b.name)), ("built", Json::Bool(false)), ("error", Json::str(why))]),
        Ok(f) => {
            let caps = CAPABILITY_ROWS
                .iter()
                .map(|(flag, label)| (capability_key(label), Json::Bool(f.caps.contains(*flag))))
                .collect();
            Json::obj([
                ("name", Json::str(f.info.name)),
                ("built", Json::Bool(true)),
                ("library", Json::str(&f.info.library)),
                ("license", Json::str(f.info.license)),
                ("capabilities", Json::Obj(caps)),
            ])
        }
    }
}

fn result(res: &ScenarioResult) -> Json {
    let (server_unit, client_unit) = res.scenario.units();
    let per_backend = res
        .outcomes
        .iter()
        .map(|(name, outcome)| {
            let value = match outcome {
                Ok(m) => measured(m),
                Err(e) => Json::obj([("error", Json::str(e))]),
            };
            (name.clone(), value)
        })
        .collect();
    Json::obj([
        ("id", Json::str(res.scenario.id)),
        ("label", Json::str(res.scenario.label)),
        ("iterations_per_repetition", Json::Num(res.scenario.iterations as f64)),
        ("server_unit", Json::str(server_unit)),
        ("client_unit", client_unit.map_or(Json::Null, Json::str)),
        ("record_bytes", opt_num(res.scenario.record_size().map(|s| s as f64))),
        ("backends", Json::Obj(per_backend)),
    ])
}

fn measured(m: &Measured) -> Json {
    Json::obj([
        ("server", sample(&m.server)),
        ("client", m.client.as_ref().map_or(Json::Null, sample)),
        ("negotiated", Json::str(&m.negotiated)),
    ])
}

fn sample(s: &Sample) -> Json {
    Json::obj([
        ("median", Json::Num(s.median())),
        ("min", Json::Num(s.min())),
        ("max", Json::Num(s.max())),
        ("values", Json::Arr(s.values().iter().map(|v| Json::Num(*v)).collect())),
    ])
}

#[cfg(test)]
mod tests {
    use super::Json;

    #[test]
    fn serializes() {
        let j = Json::obj([
            ("a", Json::Arr(vec![Json::Num(1.5), Json::Null, Json::Num(f64::INFINITY)])),
            ("b", Json::str("q\"\\\n\u{1}é")),
            ("c", Json::Obj(vec![])),
            ("d", Json::Bool(true)),
        ]);
        let want = "{\n  \"a\": [\n    1.5,\n    null,\n    null\n  ],\n  \"b\": \"q\\\"\\\\\\n\\u0001é\",\n  \"c\": {},\n  \"d\": true\n}\n";
        assert_eq!(j.to_pretty(), want);
    }
}
