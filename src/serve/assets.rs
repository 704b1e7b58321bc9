//! The dashboard page and its chart library, compiled into the binary. The page is
//! ours (`web/`); uPlot comes from npm (`web/package.json`), installed by the build
//! script when missing.

/// `(content type, body)` of a served file, by its name under `/`.
pub fn get(file: &str) -> Option<(&'static str, &'static str)> {
    Some(match file {
        "index.html" => ("text/html; charset=utf-8", INDEX),
        "app.js" => ("text/javascript; charset=utf-8", APP),
        "style.css" => ("text/css; charset=utf-8", STYLE),
        "uplot.js" => ("text/javascript; charset=utf-8", UPLOT),
        "uplot.css" => ("text/css; charset=utf-8", UPLOT_CSS),
        _ => return None,
    })
}

const INDEX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/index.html"));
const APP: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/app.js"));
const STYLE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/style.css"));
const UPLOT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/web/node_modules/uplot/dist/uPlot.iife.min.js"
));
const UPLOT_CSS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/web/node_modules/uplot/dist/uPlot.min.css"
));
