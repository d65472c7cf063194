//! Two horizontal bar charts as plain SVG text: full TLS 1.3 handshakes per second and
//! heap bytes per idle connection, one bar per backend with its min–max range as a
//! whisker.

use std::fmt::Write as _;

use super::bench::{FULL_TLS13_ECDSA, IDLE_MEMORY};
use super::markdown::num;
use super::model::Report;

const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 110.0;
const BAR_W: f64 = 480.0;
const ROW_H: f64 = 34.0;
const BAR_H: f64 = 20.0;
const TITLE_H: f64 = 46.0;
const FOOT_H: f64 = 30.0;

/// One bar: a backend's median and range, or why it has none.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Backend name.
    pub label: String,
    /// `(median, min, max)`, or the reason there is no figure.
    pub value: Result<(f64, f64, f64), String>,
}

/// One chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title line.
    pub title: String,
    /// Unit shown after each value.
    pub unit: String,
    /// What "better" means, shown under the bars.
    pub note: String,
    /// The bars, top to bottom.
    pub bars: Vec<Bar>,
}

impl Chart {
    fn height(&self) -> f64 {
        TITLE_H + ROW_H * self.bars.len().max(1) as f64 + FOOT_H
    }
}

/// The two charts of a report.
pub fn charts(r: &Report) -> Vec<Chart> {
    vec![
        chart(
            r,
            FULL_TLS13_ECDSA,
            "Full TLS 1.3 handshakes per second (ECDSA P-256, server side, median)",
            "/s",
            "Longer is better. Whiskers: min–max over the repetitions.",
        ),
        chart(
            r,
            IDLE_MEMORY,
            "Heap bytes per idle server connection (glibc mallinfo2, median)",
            " B",
            "Shorter is better. Whole process heap (Rust and C), per-connection buffers included.",
        ),
    ]
}

fn chart(r: &Report, id: &str, title: &str, unit: &str, note: &str) -> Chart {
    let bars = match r.result(id) {
        Some(res) => res
            .outcomes
            .iter()
            .map(|(name, o)| Bar {
                label: name.clone(),
                value: o.as_ref().map(|m| (m.server.median(), m.server.min(), m.server.max())).map_err(Clone::clone),
            })
            .collect(),
        None => Vec::new(),
    };
    Chart { title: title.into(), unit: unit.into(), note: note.into(), bars }
}

/// The SVG document with `charts` stacked vertically, and caption lines under them
/// (each cut to fit the width).
pub fn document(charts: &[Chart], caption: &[String]) -> String {
    let height: f64 = charts.iter().map(Chart::height).sum::<f64>() + 10.0 + 16.0 * caption.len() as f64;
    let mut out = String::new();
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let mut y = 0.0;
    for c in charts {
        draw_chart(&mut out, c, y);
        y += c.height();
    }
    for (i, line) in caption.iter().enumerate() {
        let baseline = y + 14.0 + 16.0 * i as f64;
        let text = esc(&truncate(line, 120));
        let _ = writeln!(out, r##"<text x="10" y="{baseline}" font-size="11" fill="#555555">{text}</text>"##);
    }
    out.push_str("</svg>\n");
    out
}

fn draw_chart(out: &mut String, c: &Chart, y0: f64) {
    let _ = writeln!(out, r#"<g transform="translate(0,{y0})">"#);
    let _ = writeln!(out, r#"<text x="10" y="26" font-size="15" font-weight="bold">{}</text>"#, esc(&c.title));
    let scale_max = c.bars.iter().filter_map(|b| b.value.as_ref().ok().map(|v| v.0.max(v.2))).fold(0.0_f64, f64::max);
    let x0 = 10.0 + LABEL_W;
    for (i, bar) in c.bars.iter().enumerate() {
        let y = TITLE_H + ROW_H * i as f64;
        let _ = writeln!(out, r#"<text x="10" y="{}">{}</text>"#, y + BAR_H * 0.75, esc(&bar.label));
        match &bar.value {
            Ok(v) => draw_bar(out, *v, scale_max, x0, y, &c.unit),
            Err(e) => {
                let text = format!("no figure: {}", truncate(e, 80));
                let _ =
                    writeln!(out, r##"<text x="{x0}" y="{}" fill="#b00020">{}</text>"##, y + BAR_H * 0.75, esc(&text));
            }
        }
    }
    let foot = TITLE_H + ROW_H * c.bars.len().max(1) as f64 + 12.0;
    let _ = writeln!(out, r##"<text x="10" y="{foot}" font-size="11" fill="#555555">{}</text>"##, esc(&c.note));
    out.push_str("</g>\n");
}

fn draw_bar(out: &mut String, (median, min, max): (f64, f64, f64), scale_max: f64, x0: f64, y: f64, unit: &str) {
    let px = |v: f64| {
        if scale_max > 0.0 {
            (v.max(0.0) / scale_max * BAR_W).round()
        } else {
            0.0
        }
    };
    let w = px(median);
    let _ = writeln!(out, r##"<rect x="{x0}" y="{y}" width="{w}" height="{BAR_H}" fill="#4a78c2"/>"##);
    let (lo, hi, mid) = (x0 + px(min), x0 + px(max), y + BAR_H / 2.0);
    let _ = writeln!(
        out,
        r##"<path d="M{lo},{mid} H{hi} M{lo},{} V{} M{hi},{} V{}" stroke="#222222" stroke-width="1.5" fill="none"/>"##,
        mid - 5.0,
        mid + 5.0,
        mid - 5.0,
        mid + 5.0
    );
    let label = format!("{}{unit}", num(median));
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}">{}</text>"#,
        x0 + px(median.max(max)) + 8.0,
        y + BAR_H * 0.75,
        esc(&label)
    );
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).chain(std::iter::once('…')).collect()
    }
}

/// Escapes text for XML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab/newline are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_draws() {
        assert_eq!(esc("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot; ");
        let c = Chart {
            title: "T <1>".into(),
            unit: "/s".into(),
            note: "n".into(),
            bars: vec![
                Bar { label: "x".into(), value: Ok((10.0, 9.0, 11.0)) },
                Bar { label: "y".into(), value: Err("broke & burnt".into()) },
            ],
        };
        let svg = document(&[c], &["cap".to_owned()]);
        assert!(svg.contains("T &lt;1&gt;") && svg.contains("broke &amp; burnt"));
        assert!(svg.ends_with("</svg>\n"));
    }
}
