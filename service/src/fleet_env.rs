//! ollama-herd's settings, read before the command line: its env file (`FLEET_ENV_FILE`, default
//! `~/.fleet-manager/env`), loaded under the real environment as ollama-herd loads it, and its
//! `FLEET_*` router variables, which core's `config::fleet_env` maps to herd's options and
//! configuration. Both routers call [`load`] first thing in `main`, then [`Loaded::log`] once
//! logging is up.

use herd_core::config::fleet_env::{self, FleetEnv};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The most of an env file herd reads; a larger one is refused (it is a few lines of settings).
pub const MAX_ENV_FILE_BYTES: u64 = 1 << 20;

/// ollama-herd's env file, under the home folder.
const DEFAULT_ENV_FILE: &str = ".fleet-manager/env";

/// What [`load`] found, to log once logging is set up and to hand to the router's arguments.
#[derive(Debug, Default)]
pub struct Loaded {
    /// What the `FLEET_*` variables mean (its `config` part goes to `RouterArgs::fleet_env`).
    pub env: FleetEnv,
    /// The env file read, and how many variables it set.
    pub file: Option<(PathBuf, usize)>,
    /// Lines of the env file that were skipped: (line number, why).
    pub skipped: Vec<(usize, &'static str)>,
}

/// Reads ollama-herd's env file into the environment (never over a variable already set), maps
/// the `FLEET_*` variables and sets the `HERD_*` ones they stand for, so that the command line,
/// read next, sees them (a flag on the command line still wins).
///
/// Call it before any thread starts: it changes the process's environment.
///
/// # Errors
///
/// An env file named by `FLEET_ENV_FILE` is missing; an env file cannot be read, is over
/// [`MAX_ENV_FILE_BYTES`] or is not UTF-8; a `FLEET_*` value cannot be read (every such variable
/// is named, with its value).
pub fn load() -> Result<Loaded, String> {
    let real: Vec<(String, String)> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let home = std::env::var("HOME").ok().or_else(|| std::env::var("USERPROFILE").ok()).filter(|h| !h.is_empty());
    let (loaded, from_file) = load_from(&real, home.as_deref())?;
    for (k, v) in &from_file {
        // Single-threaded here (see above): nothing else reads the environment yet.
        std::env::set_var(k, v);
    }
    for f in &loaded.env.flags {
        std::env::set_var(f.herd, &f.value);
    }
    Ok(loaded)
}

/// [`load`] without touching the process: `real` is the environment; returns what was found and
/// the env file's variables to set (those `real` lacks).
///
/// # Errors
///
/// As [`load`].
pub fn load_from(real: &[(String, String)], home: Option<&str>) -> Result<(Loaded, Vec<(String, String)>), String> {
    let explicit = real.iter().find(|(k, v)| k == "FLEET_ENV_FILE" && !v.trim().is_empty()).map(|(_, v)| v.trim());
    let path = match (explicit, home) {
        (Some(p), home) => Some(expand_home(p, home)),
        (None, Some(home)) => Some(Path::new(home).join(DEFAULT_ENV_FILE)),
        (None, None) => None,
    };
    let mut loaded = Loaded::default();
    let mut from_file = Vec::new();
    if let Some(path) = path {
        if let Some(text) = read_env_file(&path, explicit.is_some())? {
            let parsed = parse_env_file(&text);
            loaded.skipped = parsed.skipped;
            from_file = under(real, parsed.vars);
            loaded.file = Some((path, from_file.len()));
        }
    }
    let all = real.iter().chain(&from_file);
    let herd_set: BTreeSet<String> =
        all.clone().filter(|(k, v)| k.starts_with("HERD_") && !v.is_empty()).map(|(k, _)| k.clone()).collect();
    loaded.env = fleet_env::map(all.map(|(k, v)| (k.as_str(), v.as_str())), &herd_set, home);
    if !loaded.env.errors.is_empty() {
        let lines: Vec<String> = loaded.env.errors.iter().map(|e| format!("  {e}")).collect();
        return Err(format!("cannot read these ollama-herd settings:\n{}", lines.join("\n")));
    }
    Ok((loaded, from_file))
}

/// The env file's variables that the real environment does not set: the real one always wins.
pub fn under(real: &[(String, String)], file: Vec<(String, String)>) -> Vec<(String, String)> {
    let set: BTreeSet<&str> = real.iter().map(|(k, _)| k.as_str()).collect();
    file.into_iter().filter(|(k, _)| !set.contains(k.as_str())).collect()
}

/// `~` or `~/...` with the home folder, as ollama-herd's `Path.expanduser`.
fn expand_home(p: &str, home: Option<&str>) -> PathBuf {
    match (p.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => PathBuf::from(format!("{home}{rest}")),
        _ => PathBuf::from(p),
    }
}

/// The env file's text; `None` when the default one does not exist.
///
/// # Errors
///
/// `explicit` and missing; unreadable; over [`MAX_ENV_FILE_BYTES`]; not UTF-8.
pub fn read_env_file(path: &Path, explicit: bool) -> Result<Option<String>, String> {
    let shown = path.display();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(e) if explicit => return Err(format!("FLEET_ENV_FILE {shown}: {e}")),
        Err(e) => return Err(format!("env file {shown}: {e}")),
    };
    let mut bytes = Vec::new();
    file.take(MAX_ENV_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("env file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_ENV_FILE_BYTES {
        return Err(format!("env file {shown} is larger than 1 MiB, the most herd reads of one"));
    }
    String::from_utf8(bytes).map(Some).map_err(|_| format!("env file {shown} is not UTF-8 text"))
}

/// An env file, read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvFile {
    /// `KEY=value` pairs in file order (a key set twice keeps its last value).
    pub vars: Vec<(String, String)>,
    /// Lines that could not be read: (line number from 1, why). ollama-herd skips them too.
    pub skipped: Vec<(usize, &'static str)>,
}

/// Reads dotenv syntax: `KEY=value` and `export KEY=value` lines, `#` comments (whole lines, and
/// after whitespace in an unquoted value), values in single quotes (as written) or double quotes
/// (`\"`, `\\`, `\n`, `\t` escapes). No substitution and no value spans lines.
pub fn parse_env_file(text: &str) -> EnvFile {
    let mut out = EnvFile::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export").filter(|r| r.starts_with([' ', '\t'])).map_or(line, str::trim_start);
        match parse_line(line) {
            Ok((k, v)) => {
                out.vars.retain(|(old, _)| *old != k);
                out.vars.push((k, v));
            }
            Err(why) => out.skipped.push((i + 1, why)),
        }
    }
    out
}

fn parse_line(line: &str) -> Result<(String, String), &'static str> {
    let (key, value) = line.split_once('=').ok_or("no '='")?;
    let key = key.trim();
    let mut chars = key.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err("not a variable name before '='");
    }
    let value = value.trim_start();
    let (value, rest) = match value.chars().next() {
        Some('\'') => {
            let end = value[1..].find('\'').ok_or("no closing quote")?;
            (value[1..1 + end].to_string(), &value[2 + end..])
        }
        Some('"') => double_quoted(&value[1..])?,
        _ => {
            let end = value.char_indices().find(|&(i, c)| c == '#' && i > 0 && value[..i].ends_with([' ', '\t']));
            (value[..end.map_or(value.len(), |(i, _)| i)].trim_end().to_string(), "")
        }
    };
    let rest = rest.trim_start();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err("text after the closing quote");
    }
    Ok((key.to_string(), value))
}

/// The value of a double-quoted string whose opening quote was just read, and what follows it.
fn double_quoted(s: &str) -> Result<(String, &str), &'static str> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c @ ('"' | '\\')) => out.push(c),
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("no closing quote")
}

impl Loaded {
    /// Logs, once, what came from ollama-herd's settings: the env file read, each `FLEET_*`
    /// variable honoured, each one a `HERD_*` variable overrode, and a warning naming each one
    /// herd does not support, with why.
    pub fn log(&self) {
        if let Some((path, n)) = &self.file {
            tracing::info!(file = %path.display(), variables = n, "read ollama-herd's env file");
        }
        for (line, why) in &self.skipped {
            let file = self.file.as_ref().map(|(p, _)| p.display().to_string()).unwrap_or_default();
            tracing::warn!("env file {file}, line {line}: {why}; skipped");
        }
        let honoured: Vec<String> = self
            .env
            .flags
            .iter()
            .map(|f| format!("{} ({})", f.from, f.herd))
            .chain(self.env.config.iter().map(|c| format!("{} ({})", c.var, c.field)))
            .collect();
        if !honoured.is_empty() {
            tracing::info!("ollama-herd settings in use: {}", honoured.join(", "));
        }
        for (fleet, herd) in &self.env.overridden {
            tracing::info!("{fleet} is set, but {herd} is too and wins");
        }
        for u in &self.env.unsupported {
            match u.reason {
                Some(why) => tracing::warn!("{} is not supported by herd and is ignored: {why}", u.var),
                None => tracing::warn!(
                    "{} is not a router setting of ollama-herd that herd knows (misspelt?) and is ignored",
                    u.var
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn dotenv_syntax() {
        let text = "# ollama-herd settings\n\
                    FLEET_PORT=18903\n\
                    export FLEET_HOST = 127.0.0.1 \n\
                    \texport\tFLEET_DATA_DIR='/srv/fleet # not a comment'\n\
                    FLEET_LOG_LEVEL=\"WARNING\"  # a comment\n\
                    FLEET_SCORE_MODEL_HOT=60 # sixty\n\
                    FLEET_ANTHROPIC_MODEL_MAP={\"claude\":\"qwen3#8b\"}\n\
                    FLEET_QUOTED=\"a \\\"b\\\" \\\\ c\\n\"\r\n\
                    FLEET_EMPTY=\n\
                    exported=1\n\
                    FLEET_PORT=18904\n\
                    not a setting\n\
                    1BAD=x\n\
                    FLEET_OPEN=\"no end\n\
                    FLEET_TAIL='x' y\n";
        let f = parse_env_file(text);
        assert_eq!(
            f.vars,
            pairs(&[
                ("FLEET_HOST", "127.0.0.1"),
                ("FLEET_DATA_DIR", "/srv/fleet # not a comment"),
                ("FLEET_LOG_LEVEL", "WARNING"),
                ("FLEET_SCORE_MODEL_HOT", "60"),
                ("FLEET_ANTHROPIC_MODEL_MAP", "{\"claude\":\"qwen3#8b\"}"),
                ("FLEET_QUOTED", "a \"b\" \\ c\n"),
                ("FLEET_EMPTY", ""),
                ("exported", "1"),
                ("FLEET_PORT", "18904"),
            ])
        );
        assert_eq!(
            f.skipped,
            [
                (12, "no '='"),
                (13, "not a variable name before '='"),
                (14, "no closing quote"),
                (15, "text after the closing quote")
            ]
        );
    }

    #[test]
    fn the_real_environment_wins_over_the_file() {
        let tmp = temp_dir("wins");
        let dir = tmp.path();
        let file = dir.join("env");
        std::fs::write(&file, "FLEET_PORT=1111\nFLEET_HOST=127.0.0.1\nHERD_LOG_LEVEL=debug\nFLEET_LOG_LEVEL=ERROR\n")
            .unwrap();
        let real = pairs(&[("FLEET_ENV_FILE", file.to_str().unwrap()), ("FLEET_PORT", "2222")]);
        let (loaded, set) = load_from(&real, None).unwrap();
        assert_eq!(
            set,
            pairs(&[("FLEET_HOST", "127.0.0.1"), ("HERD_LOG_LEVEL", "debug"), ("FLEET_LOG_LEVEL", "ERROR")])
        );
        let flags: Vec<(&str, &str)> = loaded.env.flags.iter().map(|f| (f.herd, f.value.as_str())).collect();
        assert_eq!(flags, [("HERD_HOST", "127.0.0.1"), ("HERD_PORT", "2222")]);
        assert_eq!(loaded.env.overridden, [("FLEET_LOG_LEVEL", "HERD_LOG_LEVEL")], "the file's HERD_* counts as set");
        assert_eq!(loaded.file, Some((file, 3)));
    }

    #[test]
    fn a_missing_file_is_an_error_only_when_named() {
        let tmp = temp_dir("missing");
        let dir = tmp.path();
        let (loaded, set) = load_from(&[], Some(dir.to_str().unwrap())).unwrap();
        assert!(loaded.file.is_none() && set.is_empty(), "no ~/.fleet-manager/env is fine");
        let named = pairs(&[("FLEET_ENV_FILE", dir.join("nope").to_str().unwrap())]);
        let e = load_from(&named, None).unwrap_err();
        assert!(e.starts_with("FLEET_ENV_FILE ") && e.contains("nope"), "{e}");
        // The default file, found under the home folder.
        std::fs::create_dir_all(dir.join(".fleet-manager")).unwrap();
        std::fs::write(dir.join(".fleet-manager/env"), "export FLEET_PORT=3333\n").unwrap();
        let (loaded, _) = load_from(&[], Some(dir.to_str().unwrap())).unwrap();
        assert_eq!(loaded.env.flags[0].value, "3333");
    }

    #[test]
    fn the_file_is_bounded() {
        let tmp = temp_dir("big");
        let dir = tmp.path();
        let file = dir.join("env");
        let line = "FLEET_X=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";
        std::fs::write(&file, line.repeat((MAX_ENV_FILE_BYTES as usize) / line.len() + 1)).unwrap();
        let e = read_env_file(&file, true).unwrap_err();
        assert!(e.contains("larger than 1 MiB"), "{e}");
        std::fs::write(&file, &line.repeat(10)[..]).unwrap();
        assert!(read_env_file(&file, true).unwrap().is_some());
        std::fs::write(&file, b"FLEET_PORT=\xff\n").unwrap();
        assert!(read_env_file(&file, true).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn bad_values_refuse_to_start_naming_each() {
        let e = load_from(&pairs(&[("FLEET_PORT", "x"), ("FLEET_VRAM_FALLBACK", "sometimes")]), None).unwrap_err();
        assert!(e.contains(r#"FLEET_PORT="x""#) && e.contains(r#"FLEET_VRAM_FALLBACK="sometimes""#), "{e}");
    }

    /// A fresh folder, removed when the returned guard drops.
    fn temp_dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("herd-fleet-env-{name}-")).tempdir().unwrap()
    }
}
