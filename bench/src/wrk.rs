//! DDI base polls under an outside generator: `wrk` (Debian's package) in its
//! own process, cycling through the devices' polls with their target tokens,
//! beside the same wrk against `GET /health` in the same run.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;

/// What wrk reported for one route.
pub struct WrkOutcome {
    pub requests_per_sec: f64,
    /// 50th, 90th and 99th percentiles, in milliseconds.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
}

impl WrkOutcome {
    pub fn print(&self, route: &str) {
        println!(
            "wrk {route}: {:.0} requests/s, latency p50 / p90 / p99 / max {:.2} / {:.2} / {:.2} / {:.2} ms, {} errors",
            self.requests_per_sec, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.errors
        );
        crate::figures::record(format!("wrk {route}"), self.requests_per_sec, "requests/s");
        crate::figures::record(format!("wrk {route} p99"), self.p99_ms, "ms");
        crate::figures::record(format!("wrk {route} errors"), self.errors as f64, "requests");
    }
}

/// Runs wrk for `seconds` with `connections` over `threads` threads; each
/// request is the next of `requests` (path, Authorization value) in turn.
pub fn run(
    addr: SocketAddr,
    requests: &[(String, Option<String>)],
    connections: usize,
    threads: usize,
    seconds: u64,
) -> Result<WrkOutcome, String> {
    let mut script = tempfile::Builder::new().suffix(".lua").tempfile().map_err(|e| e.to_string())?;
    writeln!(script, "local paths = {{").map_err(|e| e.to_string())?;
    for (path, _) in requests {
        writeln!(script, "  {path:?},").map_err(|e| e.to_string())?;
    }
    writeln!(script, "}}\nlocal auths = {{").map_err(|e| e.to_string())?;
    for (_, auth) in requests {
        writeln!(script, "  {:?},", auth.as_deref().unwrap_or("")).map_err(|e| e.to_string())?;
    }
    // Each wrk thread has its own Lua state; threads start at different offsets.
    write!(
        script,
        "}}
local n = #paths
local i = math.random(n)
request = function()
  i = i % n + 1
  local headers = {{ [\"Accept\"] = \"application/json\" }}
  if auths[i] ~= \"\" then headers[\"Authorization\"] = auths[i] end
  return wrk.format(\"GET\", paths[i], headers)
end
"
    )
    .map_err(|e| e.to_string())?;
    script.flush().map_err(|e| e.to_string())?;
    let output = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string(), "-d", &format!("{seconds}s")])
        .args(["--latency", "-s"])
        .arg(script.path())
        .arg(format!("http://{addr}"))
        .output()
        .map_err(|e| format!("wrk could not run (is Debian's `wrk` installed?): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr)));
    }
    parse(&text).ok_or_else(|| format!("unexpected wrk output:\n{text}"))
}

/// Reads wrk's `--latency` report.
fn parse(text: &str) -> Option<WrkOutcome> {
    let value_after = |label: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(label).map(str::trim))
            .and_then(|r| r.split_whitespace().next())
    };
    let percentile = |p: &str| value_after(&format!("{p}%")).and_then(millis);
    let max =
        text.lines().find(|l| l.trim_start().starts_with("Latency"))?.split_whitespace().nth(3).and_then(millis)?;
    let errors = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix("Non-2xx or 3xx responses:") {
                return rest.trim().parse::<u64>().ok();
            }
            let rest = l.strip_prefix("Socket errors:")?;
            Some(rest.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum())
        })
        .sum();
    Some(WrkOutcome {
        requests_per_sec: value_after("Requests/sec:")?.parse().ok()?,
        p50_ms: percentile("50")?,
        p90_ms: percentile("90")?,
        p99_ms: percentile("99")?,
        max_ms: max,
        errors,
    })
}

/// `812.00us`, `1.43ms`, `2.01s` as milliseconds.
fn millis(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(number / 1000.0),
        "ms" => Some(number),
        "s" => Some(number * 1000.0),
        "m" => Some(number * 60_000.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrks_latency_report() {
        let text = "Running 10s test @ http://127.0.0.1:8080
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.95ms    7.01ms  69.70ms   95.12%
    Req/Sec    10.91k     1.20k   13.00k    70.00%
  Latency Distribution
     50%    1.43ms
     75%    2.01ms
     90%    3.20ms
     99%   41.50ms
  217000 requests in 10.00s, 80.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  21700.12
Transfer/sec:      8.00MB
";
        let outcome = parse(text).expect("parsed");
        assert_eq!(outcome.requests_per_sec, 21700.12);
        assert_eq!((outcome.p50_ms, outcome.p90_ms, outcome.p99_ms, outcome.max_ms), (1.43, 3.2, 41.5, 69.7));
        assert_eq!(outcome.errors, 7);
        assert_eq!(millis("812.00us"), Some(0.812));
        assert_eq!(millis("2.00s"), Some(2000.0));
    }
}
