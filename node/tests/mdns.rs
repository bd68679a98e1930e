//! mDNS end to end: `herd`'s advertiser and `herd-node`'s browser find each other across a
//! simulated LAN.
//!
//! Nothing here may put a packet on the machine's real network, so each test re-executes its own
//! test binary under `unshare --net` and runs in that fresh network namespace (the "agent's
//! machine"), after checking that it really is a different namespace. There it builds a LAN of its
//! own: a bridge `herdlan` (10.77.0.1/24) with multicast snooping off. Each router runs in a
//! further namespace (another "machine", a re-execution of this binary running
//! [`router_helper`]) joined to the bridge by a veth pair, with its own address (10.77.0.x). The
//! namespaces, and every interface in them, vanish when their processes exit; none is named, so
//! nothing is left in `/var/run/netns`.
//!
//! Without permission to create a network namespace (not root, or a sandbox that forbids it) the
//! tests fail loudly, unless `HERD_SKIP_NETNS=1` says to skip them.
//!
//! Every wait is on an event, with a bound. The one fixed wait is the check that routers that must
//! not advertise are not found: 3 s, long after a browser's first queries (within 120 ms) and a
//! router's first announcement (about 1 s, after probing), and followed by a control that finds an
//! advertising router with the same browser.
//!
//! The last test is the whole thing at the binary level: the `herd-node` binary, on the agent's
//! machine next to a simulated Ollama, with no `--router-url`, finds the real `herd` on another
//! machine and registers with it.

#[path = "../../adapter-tokio/tests/common/mod.rs"]
mod common;
mod netns;

use herd_fake_ollama::{FakeConfig, FakeOllama};
use herd_node::mdns::{Browser, Discovery, SERVICE_TYPE};
use netns::{assert_fresh_netns, ip, netns_id};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Set in a test's namespace to the namespace of the process that started it.
const NETNS_ENV: &str = "HERD_MDNS_TEST_NETNS";
/// Set in a router's namespace: `IFNAME IP/PREFIX [herd args...]`.
const ROUTER_ENV: &str = "HERD_MDNS_TEST_ROUTER";
/// The bridge of the test's LAN and the address of the agent's side.
const BRIDGE: &str = "herdlan";
const AGENT_IP: &str = "10.77.0.1";
/// How long a discovery may take: a router probes for about 750 ms, then announces.
const FOUND_WITHIN: Duration = Duration::from_secs(15);
/// A new address is noticed by mdns-sd's interface check, every 5 s.
const READDRESS_WITHIN: Duration = Duration::from_secs(20);
/// Goodbye packets carry TTL 0; RFC 6762 has the record dropped 1 s later.
const LOST_WITHIN: Duration = Duration::from_secs(15);
/// A helper's answers (start-up included).
const HELPER_WITHIN: Duration = Duration::from_secs(30);
/// From a router found to the agent registered with it, and to the router showing it online: the
/// first heartbeat goes out at once, then one every 0.5 s.
const REGISTERED_WITHIN: Duration = Duration::from_secs(10);

/// `true`: this is the test's own namespace, with the private LAN's bridge set up; go on.
/// `false`: the test ran in a child namespace and passed (or was skipped as allowed).
fn inside_netns(test: &str) -> bool {
    if !netns::inside_netns(NETNS_ENV, test, "mDNS") {
        return false;
    }
    ip(&["link", "add", BRIDGE, "type", "bridge", "mcast_snooping", "0"]);
    ip(&["addr", "add", &format!("{AGENT_IP}/24"), "dev", BRIDGE]);
    ip(&["link", "set", BRIDGE, "up"]);
    true
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn args(host: &str, dir: &std::path::Path, extra: &[&str]) -> herd_tokio::app::Args {
    use clap::Parser;
    let d = dir.display().to_string();
    let mut argv = vec!["herd", "--host", host, "--port", "0", "--seed", "1", "--data-dir", &d];
    argv.extend_from_slice(extra);
    herd_tokio::app::Args::try_parse_from(argv).unwrap()
}

/// A router on another "machine" of the LAN: [`router_helper`] in a namespace of its own. Its
/// stdin takes commands; dropping it (stdin closed, process killed) ends it and its namespace.
struct RemoteRouter {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    ip: String,
    port: u16,
}

impl RemoteRouter {
    /// Starts a router at `10.77.0.{host}` with `extra` herd arguments.
    async fn start(host: u8, extra: &[&str]) -> RemoteRouter {
        let (lan_end, far_end) = (format!("herdb{host}"), format!("herdr{host}"));
        let ip4 = format!("10.77.0.{host}");
        ip(&["link", "add", &lan_end, "type", "veth", "peer", "name", &far_end]);
        ip(&["link", "set", &lan_end, "master", BRIDGE]);
        ip(&["link", "set", &lan_end, "up"]);
        let exe = std::env::current_exe().unwrap();
        let spec = format!("{far_end} {ip4}/24 {}", extra.join(" "));
        let mut child = tokio::process::Command::new("unshare")
            .args(["--net", "--"])
            .arg(exe)
            .args(["--exact", "router_helper", "--ignored", "--nocapture", "--test-threads=1"])
            .env(ROUTER_ENV, spec.trim())
            .env(NETNS_ENV, netns_id())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the router helper");
        // `unshare` without --fork execs the helper: this pid is the helper. Once it says it is
        // ready, it is in its own namespace, and the veth end can be moved there.
        let pid = child.id().expect("helper pid").to_string();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut r = RemoteRouter { child, stdin, lines, ip: ip4, port: 0 };
        assert_eq!(r.answer("start").await, "ready");
        ip(&["link", "set", &far_end, "netns", &pid]);
        let port = r.command("go").await;
        r.port = port.parse().expect("port");
        r
    }

    /// Sends one command line, returns the helper's answer.
    async fn command(&mut self, line: &str) -> String {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        self.answer(line).await
    }

    /// The helper's next answer (`HERD_HELPER <answer>`) to `line`.
    async fn answer(&mut self, line: &str) -> String {
        let answer = tokio::time::timeout(HELPER_WITHIN, async {
            while let Some(l) = self.lines.next_line().await.unwrap() {
                // libtest may have started the line ("test router_helper ... ").
                if let Some(at) = l.find("HERD_HELPER ") {
                    return l[at + "HERD_HELPER ".len()..].to_string();
                }
            }
            panic!("the router helper exited during {line:?}")
        })
        .await
        .unwrap_or_else(|_| panic!("the router helper did not answer {line:?}"));
        assert!(!answer.starts_with("ERROR"), "router helper: {answer}");
        answer
    }

    fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }

    /// Moves the router to a new address (a DHCP change).
    async fn readdress(&mut self, host: u8) {
        let ip4 = format!("10.77.0.{host}");
        self.command(&format!("readdress {}/24 {ip4}/24", self.ip)).await;
        self.ip = ip4;
    }

    /// Shuts the router down (goodbye packets) and waits for the helper to exit.
    async fn stop(mut self) {
        self.command("stop").await;
        let status = tokio::time::timeout(HELPER_WITHIN, self.child.wait()).await.expect("helper exit").unwrap();
        assert!(status.success(), "router helper: {status}");
    }
}

/// Not a test: runs one router for the tests above, inside the namespace they made for it, driven
/// by commands on stdin (`go`, `readdress OLD NEW`, `stop`), answering `HERD_HELPER ...` lines.
#[test]
#[ignore = "helper process of the mDNS tests; does nothing when run on its own"]
fn router_helper() {
    let (Ok(spec), Ok(parent)) = (std::env::var(ROUTER_ENV), std::env::var(NETNS_ENV)) else { return };
    assert_fresh_netns(&parent, "mDNS");
    let mut words = spec.split_whitespace();
    let (ifname, cidr) = (words.next().unwrap().to_string(), words.next().unwrap().to_string());
    let extra: Vec<&str> = words.collect();
    let answer = |a: &str| println!("HERD_HELPER {a}");
    answer("ready");
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    // "go" comes once the veth end has been moved in here.
    stdin.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go");
    ip(&["link", "set", "lo", "up"]);
    ip(&["addr", "add", &cidr, "dev", &ifname]);
    ip(&["link", "set", &ifname, "up"]);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = rt.block_on(herd_tokio::start(&args("0.0.0.0", dir.path(), &extra))).unwrap();
    answer(&running.addr.port().to_string());
    loop {
        line.clear();
        if stdin.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let cmd: Vec<&str> = line.split_whitespace().collect();
        match cmd.as_slice() {
            ["readdress", old, new] => {
                // In this order: deleting a primary address also deletes the secondaries.
                ip(&["addr", "del", old, "dev", &ifname]);
                ip(&["addr", "add", new, "dev", &ifname]);
                answer("OK");
            }
            ["stop"] => break,
            other => answer(&format!("ERROR unknown command {other:?}")),
        }
    }
    running.shutdown();
    answer("STOPPED");
}

/// The next discovery within `within`, or `None` on timeout.
async fn next_within(browser: &Browser, within: Duration) -> Option<Discovery> {
    tokio::time::timeout(within, browser.next()).await.ok().flatten()
}

/// Waits for a `Found` that lists `url`; what else arrived meanwhile is reported on failure.
async fn found(browser: &Browser, url: &str, within: Duration) -> (String, Vec<String>, BTreeMap<String, String>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_within(browser, left).await {
            Some(Discovery::Found { instance, urls, txt }) if urls.iter().any(|u| u == url) => {
                return (instance, urls, txt)
            }
            Some(other) => seen.push(other),
            None => panic!("{url} not found within {within:?}; saw {seen:?}"),
        }
    }
}

/// GET / on `url`: herd answers "Ollama is running", as Ollama does.
async fn get_root(url: &str) -> String {
    use tokio::io::AsyncReadExt;
    let hostport = url.strip_prefix("http://").unwrap();
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(hostport))
        .await
        .expect("connect timeout")
        .unwrap_or_else(|e| panic!("connect {hostport}: {e}"));
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut body)).await.expect("read timeout").unwrap();
    body
}

#[test]
fn router_is_found_follows_a_new_address_and_is_lost() {
    if !inside_netns("router_is_found_follows_a_new_address_and_is_lost") {
        return;
    }
    runtime().block_on(async {
        // The browser starts first: the router appears later, as after a reboot.
        let browser = Browser::start(SERVICE_TYPE).expect("browser");
        let mut router = RemoteRouter::start(2, &[]).await;

        let (instance, urls, txt) = found(&browser, &router.url(), FOUND_WITHIN).await;
        eprintln!("found {instance}: {urls:?} {txt:?}");
        assert_eq!(instance, "Fleet Manager Router._fleet-manager._tcp.local.");
        assert_eq!(urls, vec![router.url()], "0.0.0.0 publishes the LAN's IPv4 address only");
        assert_eq!(txt.get("version").map(String::as_str), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(txt.get("api").map(String::as_str), Some("1"));
        assert_eq!(txt.get("tls").map(String::as_str), Some("0"));
        assert_eq!(txt.get("path").map(String::as_str), Some("/heartbeat"));
        assert!(txt.get("id").is_some_and(|id| !id.is_empty()), "{txt:?}");
        assert!(get_root(&urls[0]).await.contains("Ollama is running"), "the discovered URL reaches the router");

        // A rescan reports the known router again.
        browser.rescan().unwrap();
        let (again, _, _) = found(&browser, &router.url(), FOUND_WITHIN).await;
        assert_eq!(again, instance);

        // The router's machine gets a new address (the DHCP change that cost ollama-herd a fleet):
        // the browser reports the new URL.
        router.readdress(12).await;
        let (moved, urls, _) = found(&browser, &router.url(), READDRESS_WITHIN).await;
        assert_eq!(moved, instance);
        eprintln!("after the new address: {urls:?}");
        assert!(get_root(&router.url()).await.contains("Ollama is running"));

        // Shutting the router down sends goodbyes: the browser loses it.
        router.stop().await;
        let deadline = tokio::time::Instant::now() + LOST_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match next_within(&browser, left).await {
                Some(Discovery::Lost { instance: lost }) if lost == instance => break,
                Some(_) => {}
                None => panic!("router not lost within {LOST_WITHIN:?} of its shutdown"),
            }
        }
        browser.stop();
    });
}

#[test]
fn no_mdns_and_loopback_are_not_advertised() {
    if !inside_netns("no_mdns_and_loopback_are_not_advertised") {
        return;
    }
    runtime().block_on(async {
        let browser = Browser::start(SERVICE_TYPE).expect("browser");
        // On this machine, in this process: no advertiser is even started.
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let quiet = herd_tokio::start(&args("0.0.0.0", d1.path(), &["--no-mdns"])).await.unwrap();
        assert!(quiet.mdns.is_none(), "--no-mdns starts no advertiser");
        let local = herd_tokio::start(&args("127.0.0.1", d2.path(), &[])).await.unwrap();
        assert!(local.mdns.is_none(), "a loopback router starts no advertiser");
        let lo = "127.0.0.1:11435".parse().unwrap();
        assert!(herd_tokio::mdns::advertise(lo, &Default::default()).unwrap().is_none());
        // On another machine of the LAN.
        let remote_quiet = RemoteRouter::start(2, &["--no-mdns"]).await;

        // A fixed wait, on purpose: nothing may be found in 3 s.
        if let Some(d) = next_within(&browser, Duration::from_secs(3)).await {
            panic!("found a router that should not be advertised: {d:?}");
        }

        // The control: the same browser does find a router that advertises, and only that one.
        let loud = RemoteRouter::start(3, &[]).await;
        let (_, urls, _) = found(&browser, &loud.url(), FOUND_WITHIN).await;
        assert_eq!(urls, vec![loud.url()]);
        loud.stop().await;
        remote_quiet.stop().await;
        quiet.shutdown();
        local.shutdown();
    });
}

#[test]
fn two_routers_on_a_lan_get_distinct_names() {
    if !inside_netns("two_routers_on_a_lan_get_distinct_names") {
        return;
    }
    runtime().block_on(async {
        let browser = Browser::start(SERVICE_TYPE).expect("browser");
        let first = RemoteRouter::start(2, &[]).await;
        let (name1, _, _) = found(&browser, &first.url(), FOUND_WITHIN).await;
        // The second claims the same instance name, finds it taken while probing, and renames
        // itself (as it would next to an ollama-herd router).
        let second = RemoteRouter::start(3, &[]).await;
        let (name2, _, _) = found(&browser, &second.url(), FOUND_WITHIN).await;
        assert_eq!(name1, "Fleet Manager Router._fleet-manager._tcp.local.");
        assert_eq!(name2, "Fleet Manager Router (2)._fleet-manager._tcp.local.");
        second.stop().await;
        first.stop().await;
    });
}

/// `herd-node` on the agent's machine (this namespace), killed on drop. Its log (stderr) is
/// echoed as `[herd-node] ...` lines, shown when the test fails, and read by [`NodeAgent::log`].
struct NodeAgent {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line read so far, and how many of them earlier waits have consumed.
    log: Vec<String>,
    read: usize,
}

impl NodeAgent {
    /// Starts `herd-node` with `args` and none of its variables (no `HERD_ROUTER_URL` or
    /// `FLEET_NODE_ROUTER_URL` in particular: it must find its router itself).
    fn start(args: &[&str]) -> NodeAgent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herd-node"));
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("HERD_") || k.starts_with("FLEET_NODE_")) {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .args(args)
            .env("HERD_LOG", "herd_node=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting herd-node");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[herd-node] {line}");
                let _ = tx.send(line);
            }
        });
        NodeAgent { child, lines, log: Vec::new(), read: 0 }
    }

    /// The first log line after the last one a wait returned that contains `needle`.
    async fn log(&mut self, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(at) = self.log[self.read..].iter().position(|l| l.contains(needle)) {
                self.read += at + 1;
                return self.log[self.read - 1].clone();
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.log.push(line),
                Ok(None) => panic!("herd-node exited before logging {needle:?}: {:?}", self.child.try_wait()),
                Err(_) => {
                    let panicked = self.log.iter().find(|l| l.contains("panicked at"));
                    panic!("herd-node did not log {needle:?} within {within:?} (its log is above; {panicked:?})")
                }
            }
        }
    }

    /// SIGTERM, then its exit status (within `within`) and the rest of its log.
    async fn terminate(&mut self, within: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        let deadline = tokio::time::Instant::now() + within;
        // The log ends when the process exits (nothing else holds its stderr).
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.log.push(line),
                Ok(None) => break,
                Err(_) => panic!("herd-node did not exit within {within:?} of SIGTERM"),
            }
        }
        let status = self.child.wait().unwrap();
        (status, self.log[self.read..].to_vec())
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a log line names `url` (whole: `...:80` does not name `...:8`).
fn names_url(line: &str, url: &str) -> bool {
    line.match_indices(url).any(|(at, _)| !line[at + url.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// One request to a router (a JSON body if any): status, headers, body.
async fn http(method: &str, url: &str, json: Option<Value>) -> (u16, hyper::header::HeaderMap, Vec<u8>) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if json.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = json.map(|j| j.to_string()).unwrap_or_default();
    let req = req.body(Full::new(bytes::Bytes::from(body))).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        let resp = client.request(req).await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let (parts, body) = resp.into_parts();
        (parts.status.as_u16(), parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {url}: no answer within 10 s"))
}

/// The router's view of node `id` once `pred` holds for it (GET /fleet/status every 50 ms).
async fn node_where(router: &str, id: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (code, _, body) = http("GET", &format!("{router}/fleet/status"), None).await;
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let status: Value = serde_json::from_slice(&body).unwrap();
        let node = status["nodes"].as_array().and_then(|ns| ns.iter().find(|n| n["node_id"] == id));
        if let Some(n) = node.filter(|n| pred(n)) {
            return n.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "node {id} not as expected within {within:?}: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A chat through `router` to the model the simulated Ollama has loaded: the node that served it.
async fn chat(router: &str) -> String {
    let body =
        serde_json::json!({"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}], "stream": false});
    let (code, headers, body) = http("POST", &format!("{router}/api/chat"), Some(body)).await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    headers.get("x-herd-node").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// The real thing: `herd-node` (the binary) with no `--router-url`, started before any router
/// exists, finds `herd` on another machine of the LAN when it comes up, registers, and gets work;
/// when the router comes back on another machine (new address and port, same mDNS instance) it
/// follows, and on SIGTERM drains from that router only (the old one was replaced, not kept).
#[test]
fn herd_node_without_router_url_finds_herd_and_registers() {
    if !inside_netns("herd_node_without_router_url_finds_herd_and_registers") {
        return;
    }
    runtime().block_on(async {
        // Ollama on the agent's machine, reachable from the LAN (0.0.0.0), sending no heartbeats.
        let config = FakeConfig {
            spec: common::spec("mdns-box", &["qwen3:8b"], &["qwen3:8b"], 2),
            timing: common::fast(),
            heartbeat: None,
        };
        let ollama = FakeOllama::start(SocketAddr::from(([0, 0, 0, 0], 0)), config).await.unwrap();
        let port = ollama.addr().port();
        // A loopback --ollama-host: the router uses the heartbeat's source address instead.
        let ollama_host = format!("http://127.0.0.1:{port}");
        let mut node =
            NodeAgent::start(&["--ollama-host", &ollama_host, "--heartbeat-secs", "0.5", "--node-id", "mdns-node"]);
        // Browsing, with no router on the LAN yet.
        node.log("looking for routers over mDNS", REGISTERED_WITHIN).await;

        let router = RemoteRouter::start(2, &[]).await;
        let found = node.log("found a router over mDNS", FOUND_WITHIN).await;
        let instance = "instance=Fleet Manager Router._fleet-manager._tcp.local.";
        assert!(found.contains(instance) && names_url(&found, &router.url()), "{found}");
        let registered = node.log("registered with the router", REGISTERED_WITHIN).await;
        assert!(names_url(&registered, &router.url()), "{registered}");
        let n = node_where(&router.url(), "mdns-node", REGISTERED_WITHIN, |n| n["status"] == "online").await;
        assert_eq!(n["url"], format!("http://{AGENT_IP}:{port}"), "the heartbeat's source address: {n}");
        assert_eq!(n["ollama_reachable"], true, "{n}");
        assert_eq!(chat(&router.url()).await, "mdns-node");
        assert_eq!(ollama.stats().completed, 1);

        // The router's machine is replaced: goodbye from 10.77.0.2, the same instance from
        // 10.77.0.3 on another port. The agent moves its heartbeats there.
        router.stop().await;
        let router = RemoteRouter::start(3, &[]).await;
        let moved = node.log("found a router over mDNS", FOUND_WITHIN).await;
        assert!(moved.contains(instance) && names_url(&moved, &router.url()), "{moved}");
        let registered = node.log("registered with the router", REGISTERED_WITHIN).await;
        assert!(names_url(&registered, &router.url()), "{registered}");
        node_where(&router.url(), "mdns-node", REGISTERED_WITHIN, |n| n["status"] == "online").await;
        assert_eq!(chat(&router.url()).await, "mdns-node");
        assert_eq!(ollama.stats().completed, 2);

        // SIGTERM drains from the router it reports to, and from no other: the old router,
        // unreachable now, would have cost a failed drain (and its 2 s timeout).
        let (status, log) = node.terminate(Duration::from_secs(5)).await;
        assert!(status.success(), "herd-node: {status}");
        let drained: Vec<&String> = log.iter().filter(|l| l.contains("drain") && l.contains("router=")).collect();
        assert!(
            drained.len() == 1 && drained[0].contains("drained:") && names_url(drained[0], &router.url()),
            "{drained:?}"
        );
        let n = node_where(&router.url(), "mdns-node", Duration::from_millis(500), |_| true).await;
        assert_eq!(n["status"], "draining", "{n}");
        router.stop().await;
        ollama.shutdown();
    });
}
