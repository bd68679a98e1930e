//! Where Ollama's own settings (`OLLAMA_NUM_PARALLEL`, `OLLAMA_MAX_LOADED_MODELS`) can be read.
//! Ollama has no endpoint for them. ollama-herd read only the agent's own environment, so an
//! Ollama run by systemd (the Linux installer's default) always looked like "unknown"
//! (reference herd-node.md §8.6). In order:
//!
//! 1. this process's environment (the user started both the same way);
//! 2. the environment of the running `ollama serve` process (`/proc/<pid>/environ`, readable
//!    when the agent runs as the same user or as root);
//! 3. systemd's unit for Ollama: `Environment=` lines in `ollama.service` and its drop-ins
//!    (`ollama.service.d/*.conf`), which are world-readable.
//!
//! A value that is not a positive integer counts as absent (0 = unknown in the heartbeat).

use std::path::Path;

/// The two settings; 0 = unknown.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct OllamaSettings {
    /// `OLLAMA_NUM_PARALLEL`.
    pub num_parallel: u32,
    /// `OLLAMA_MAX_LOADED_MODELS`.
    pub max_loaded_models: u32,
}

impl OllamaSettings {
    fn fill(&mut self, name: &str, value: &str) {
        let Some(n) = positive(value) else { return };
        match name {
            "OLLAMA_NUM_PARALLEL" if self.num_parallel == 0 => self.num_parallel = n,
            "OLLAMA_MAX_LOADED_MODELS" if self.max_loaded_models == 0 => self.max_loaded_models = n,
            _ => {}
        }
    }

    fn complete(&self) -> bool {
        self.num_parallel > 0 && self.max_loaded_models > 0
    }
}

fn positive(v: &str) -> Option<u32> {
    v.trim().trim_matches('"').parse::<u32>().ok().filter(|n| *n > 0)
}

/// Settings from `NAME=value` pairs (an environment).
pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, into: &mut OllamaSettings) {
    for (k, v) in pairs {
        into.fill(k, v);
    }
}

/// The NUL-separated `KEY=value` pairs of a `/proc/<pid>/environ` file.
pub fn parse_environ(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether a `/proc/<pid>/cmdline` (NUL-separated) is an Ollama server: `ollama serve` (or
/// `ollama` alone, which some packages run as the server).
pub fn is_ollama_server(cmdline: &[u8]) -> bool {
    let mut args = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty());
    let Some(exe) = args.next() else { return false };
    let exe = std::str::from_utf8(exe).unwrap_or("");
    let name = exe.rsplit('/').next().unwrap_or(exe);
    name == "ollama" && args.next().is_none_or(|a| a == b"serve")
}

/// `Environment=` assignments of a systemd unit file, in order. Handles several assignments on
/// one line, double-quoted assignments (`Environment="A=1" "B=2"`) and comments.
pub fn parse_unit_environment(unit: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in unit.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("Environment=") else { continue };
        let mut rest = rest.trim();
        while !rest.is_empty() {
            let (word, tail) = if let Some(q) = rest.strip_prefix('"') {
                match q.split_once('"') {
                    Some((w, t)) => (w, t),
                    None => (q, ""),
                }
            } else {
                match rest.split_once(char::is_whitespace) {
                    Some((w, t)) => (w, t),
                    None => (rest, ""),
                }
            };
            if let Some((k, v)) = word.split_once('=') {
                out.push((k.to_string(), v.to_string()));
            }
            rest = tail.trim_start();
        }
    }
    out
}

/// Reads the settings from the three sources under `root` (`/` in production; a folder of
/// recorded files in tests).
pub fn discover(root: &Path, own_env: impl IntoIterator<Item = (String, String)>) -> (OllamaSettings, &'static str) {
    let mut s = OllamaSettings::default();
    let own: Vec<(String, String)> = own_env.into_iter().collect();
    from_pairs(own.iter().map(|(k, v)| (k.as_str(), v.as_str())), &mut s);
    if s.complete() {
        return (s, "environment");
    }
    let mut source = if s == OllamaSettings::default() { "" } else { "environment" };
    if let Ok(entries) = std::fs::read_dir(root.join("proc")) {
        for e in entries.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
            if !is_ollama_server(&cmdline) {
                continue;
            }
            if let Ok(environ) = std::fs::read(e.path().join("environ")) {
                let before = s;
                let pairs = parse_environ(&environ);
                from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), &mut s);
                if s != before {
                    source = "ollama process";
                }
            }
            break;
        }
    }
    if s.complete() {
        return (s, source);
    }
    let dirs = ["etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"];
    for dir in dirs {
        let unit = root.join(dir).join("ollama.service");
        let mut files = vec![unit.clone()];
        if let Ok(entries) = std::fs::read_dir(root.join(dir).join("ollama.service.d")) {
            let mut dropins: Vec<_> =
                entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect();
            dropins.sort();
            // Drop-ins override the unit: read them first, since the first value found wins.
            dropins.reverse();
            files.splice(0..0, dropins);
        }
        for f in files {
            if let Ok(text) = std::fs::read_to_string(&f) {
                let before = s;
                // The last assignment in a file wins within it.
                let pairs = parse_unit_environment(&text);
                from_pairs(pairs.iter().rev().map(|(k, v)| (k.as_str(), v.as_str())), &mut s);
                if s != before {
                    source = "systemd unit";
                }
            }
        }
    }
    (s, if source.is_empty() { "unknown" } else { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ_and_cmdline() {
        let env = parse_environ(b"PATH=/usr/bin\0OLLAMA_NUM_PARALLEL=4\0OLLAMA_HOST=0.0.0.0\0\0");
        assert_eq!(env[1], ("OLLAMA_NUM_PARALLEL".to_string(), "4".to_string()));
        assert!(is_ollama_server(b"/usr/local/bin/ollama\0serve\0"));
        assert!(is_ollama_server(b"ollama\0"));
        assert!(!is_ollama_server(b"/usr/local/bin/ollama\0run\0llama3\0"));
        assert!(!is_ollama_server(b"/usr/bin/python3\0ollama\0"));
        assert!(!is_ollama_server(b""));
    }

    #[test]
    fn unit_environment_lines() {
        let unit = "[Service]\nExecStart=/usr/bin/ollama serve\n# Environment=OLLAMA_NUM_PARALLEL=9\n\
                    Environment=\"PATH=/usr/bin:/bin\" \"OLLAMA_NUM_PARALLEL=2\"\nEnvironment=OLLAMA_MAX_LOADED_MODELS=3 OLLAMA_KEEP_ALIVE=1h\n";
        let env = parse_unit_environment(unit);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_KEEP_ALIVE"]);
        assert_eq!(env[0].1, "/usr/bin:/bin");
    }

    fn write(root: &Path, rel: &str, content: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    #[test]
    fn sources_in_order() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // Nothing anywhere.
        assert_eq!(discover(r, []), (OllamaSettings::default(), "unknown"));
        // The systemd unit, with a drop-in that overrides it.
        write(
            r,
            "etc/systemd/system/ollama.service",
            b"[Service]\nEnvironment=OLLAMA_NUM_PARALLEL=2\nEnvironment=OLLAMA_MAX_LOADED_MODELS=2\n",
        );
        write(
            r,
            "etc/systemd/system/ollama.service.d/override.conf",
            b"[Service]\nEnvironment=\"OLLAMA_NUM_PARALLEL=6\"\n",
        );
        let (s, src) = discover(r, []);
        assert_eq!((s.num_parallel, s.max_loaded_models, src), (6, 2, "systemd unit"));
        // The running server's environment wins over the unit.
        write(r, "proc/4242/cmdline", b"/usr/local/bin/ollama\0serve\0");
        write(r, "proc/4242/environ", b"OLLAMA_NUM_PARALLEL=8\0OLLAMA_MAX_LOADED_MODELS=4\0");
        write(r, "proc/17/cmdline", b"/usr/bin/bash\0");
        assert_eq!(discover(r, []), (OllamaSettings { num_parallel: 8, max_loaded_models: 4 }, "ollama process"));
        // The agent's own environment wins over everything; a bad value counts as absent.
        let own =
            [("OLLAMA_NUM_PARALLEL".to_string(), "3".to_string()), ("OLLAMA_MAX_LOADED_MODELS".into(), "x".into())];
        assert_eq!(discover(r, own), (OllamaSettings { num_parallel: 3, max_loaded_models: 4 }, "ollama process"));
    }
}
