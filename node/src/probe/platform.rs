//! The few facts that come from OS commands on macOS and Windows (`sysctl`, `ioreg`, `reg`). The
//! code compiles on every OS, so the Linux build type-checks it; [`super::MachineProbe`] calls it
//! only on its own OS (`cfg!`). Parsing is pure and tested here on recorded output.

use super::memory::macos_pressure_level;
use herd_core::fleet::heartbeat::Pressure;
use std::process::Command;

/// Runs a command and returns its stdout when it succeeds.
fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// macOS: the kernel's pressure level and the compressor's occupied bytes, in one `sysctl` call
/// per sample (ollama-herd ran two).
pub fn macos_memory() -> (Pressure, u64) {
    // A failed oid makes sysctl exit non-zero but still print the others, so read stdout anyway.
    let out = Command::new("/usr/sbin/sysctl")
        .args(["-n", "kern.memorystatus_vm_pressure_level", "vm.compressor_bytes_used"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    parse_macos_memory(&out)
}

/// The two lines of `sysctl -n kern.memorystatus_vm_pressure_level vm.compressor_bytes_used`.
pub fn parse_macos_memory(text: &str) -> (Pressure, u64) {
    let mut lines = text.lines();
    let pressure = macos_pressure_level(lines.next().unwrap_or(""));
    let compressed = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    (pressure, compressed)
}

/// macOS: "Apple M3 Ultra" (or the Intel brand string).
pub fn macos_chip() -> Option<String> {
    run("/usr/sbin/sysctl", &["-n", "machdep.cpu.brand_string"]).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// macOS: the hardware UUID (`IOPlatformUUID`), the machine's stable identity.
pub fn macos_machine_id() -> Option<String> {
    parse_ioreg_uuid(&run("/usr/sbin/ioreg", &["-rd1", "-c", "IOPlatformExpertDevice"])?)
}

/// Finds `"IOPlatformUUID" = "…"` in `ioreg -rd1 -c IOPlatformExpertDevice` output.
pub fn parse_ioreg_uuid(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains("\"IOPlatformUUID\""))?;
    let value = line.split_once('=')?.1.trim().trim_matches('"');
    (!value.is_empty()).then(|| value.to_string())
}

/// Windows: `HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid`, set at install.
pub fn windows_machine_id() -> Option<String> {
    parse_reg_machine_guid(&run("reg", &["query", r"HKLM\SOFTWARE\Microsoft\Cryptography", "/v", "MachineGuid"])?)
}

/// Finds `MachineGuid    REG_SZ    …` in `reg query` output.
pub fn parse_reg_machine_guid(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.trim_start().starts_with("MachineGuid"))?;
    let mut words = line.split_whitespace();
    let (_, kind, value) = (words.next()?, words.next()?, words.next()?);
    (kind == "REG_SZ").then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macos_sysctl_memory() {
        assert_eq!(parse_macos_memory("1\n1073741824\n"), (Pressure::Normal, 1 << 30));
        assert_eq!(parse_macos_memory("4\n0\n"), (Pressure::Critical, 0));
        assert_eq!(parse_macos_memory(""), (Pressure::Normal, 0));
    }

    #[test]
    fn ioreg_uuid() {
        let out = "+-o J316sAP  <class IOPlatformExpertDevice, id 0x100000204>\n    {\n      \
                   \"IOPlatformSerialNumber\" = \"C02XXXXXXXX\"\n      \
                   \"IOPlatformUUID\" = \"6A3B1C2D-1111-2222-3333-444455556666\"\n    }\n";
        assert_eq!(parse_ioreg_uuid(out).as_deref(), Some("6A3B1C2D-1111-2222-3333-444455556666"));
        assert_eq!(parse_ioreg_uuid("nothing"), None);
    }

    #[test]
    fn reg_machine_guid() {
        let out = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography\r\n    \
                   MachineGuid    REG_SZ    0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\r\n\r\n";
        assert_eq!(parse_reg_machine_guid(out).as_deref(), Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
        assert_eq!(parse_reg_machine_guid("ERROR: not found"), None);
    }
}
