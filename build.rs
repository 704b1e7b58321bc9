//! Installs the dashboard's npm packages (the uPlot chart library) when they are
//! missing, so that the binary embeds them and fetches nothing at run time.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=web/node_modules/uplot/dist/uPlot.iife.min.js");
    if Path::new("web/node_modules/uplot/dist/uPlot.iife.min.js").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir("web")
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`npm ci` in web/ failed ({status}): the dashboard's chart library (uPlot) could not be installed; check that the npm registry is reachable and build again"
        ),
        Err(error) => panic!(
            "the dashboard's chart library is installed with npm at build time, and npm could not be started ({error}): install Node.js and npm (apt-get install nodejs npm) and build again"
        ),
    }
}
