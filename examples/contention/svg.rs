//! A hand-written SVG line chart (goodput against writers, one line per
//! policy, one panel per workload): about a hundred lines, which is less than
//! a plotting dependency would cost to build.

use std::fmt::Write as _;

/// One line: `(writers, commits/s)` points.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// One chart.
pub(crate) struct Panel {
    pub(crate) title: String,
    pub(crate) series: Vec<Series>,
}

const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 320.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 40.0;
const PLOT_W: f64 = 360.0;
const PLOT_H: f64 = 230.0;
const LEGEND_W: f64 = 220.0;

/// Distinguishable colours, cycled with dash patterns past their count.
const COLOURS: [&str; 7] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];
const DASHES: [&str; 3] = ["", "6 3", "2 2"];

/// The panels side by side, x on a log₂ scale, with a shared legend.
pub(crate) fn plot(panels: &[Panel]) -> String {
    let width = PANEL_W * panels.len() as f64 + LEGEND_W;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{PANEL_H}" viewBox="0 0 {width} {PANEL_H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="{width}" height="{PANEL_H}" fill="white"/>"#);
    for (index, panel) in panels.iter().enumerate() {
        draw_panel(&mut out, panel, PANEL_W * index as f64);
    }
    if let Some(first) = panels.first() {
        let x = PANEL_W * panels.len() as f64;
        for (index, series) in first.series.iter().enumerate() {
            let y = TOP + 14.0 * index as f64;
            let (colour, dash) = style(index);
            let _ = writeln!(
                out,
                r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{}</text>"#,
                x + 24.0,
                x + 30.0,
                y + 4.0,
                escape(&series.name)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

fn style(index: usize) -> (&'static str, &'static str) {
    (COLOURS[index % COLOURS.len()], DASHES[(index / COLOURS.len()) % DASHES.len()])
}

fn draw_panel(out: &mut String, panel: &Panel, offset: f64) {
    let points = panel.series.iter().flat_map(|s| s.points.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max).log2().max(1.0);
    let y_max = nice(points.map(|p| p.1).fold(1.0, f64::max));
    let sx = |writers: f64| offset + LEFT + writers.log2() / x_max * PLOT_W;
    let sy = |goodput: f64| TOP + PLOT_H - goodput / y_max * PLOT_H;
    let (left, bottom) = (offset + LEFT, TOP + PLOT_H);
    let _ =
        writeln!(out, r#"<text x="{}" y="20" font-size="13" font-weight="bold">{}</text>"#, left, escape(&panel.title));
    let _ = writeln!(out, r##"<path d="M{left},{TOP} V{bottom} H{}" fill="none" stroke="#333"/>"##, left + PLOT_W);
    for step in 0..=4 {
        let value = y_max * f64::from(step) / 4.0;
        let y = sy(value);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            left + PLOT_W,
            left - 6.0,
            y + 4.0,
            thousands(value)
        );
    }
    let mut ticks: Vec<f64> = panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for writers in ticks {
        let x = sx(writers);
        let _ = writeln!(out, r#"<text x="{x}" y="{}" text-anchor="middle">{writers}</text>"#, bottom + 16.0);
    }
    let _ =
        writeln!(out, r#"<text x="{}" y="{}" text-anchor="middle">writers</text>"#, left + PLOT_W / 2.0, bottom + 34.0);
    let _ = writeln!(
        out,
        r#"<text transform="translate({},{}) rotate(-90)" text-anchor="middle">commits/s</text>"#,
        offset + 14.0,
        TOP + PLOT_H / 2.0
    );
    for (index, series) in panel.series.iter().enumerate() {
        let (colour, dash) = style(index);
        let path: Vec<String> = series.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
            path.join(" ")
        );
    }
}

/// The next round number above `value`: 1, 2 or 5 times a power of ten.
fn nice(value: f64) -> f64 {
    let power = 10_f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|v| *v >= value).unwrap_or(value)
}

fn thousands(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 && value % 1e3 == 0.0 {
        format!("{:.0}k", value / 1e3)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
