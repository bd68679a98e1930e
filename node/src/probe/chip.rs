//! What the machine is: the architecture label ollama-herd uses, and a human chip name from
//! `/proc/cpuinfo` (or the OS elsewhere) with the first NVIDIA GPU appended.

/// ollama-herd's `arch` label: `apple_silicon` on macOS arm64, `x86_64`, `arm64`, else the raw
/// architecture (`std::env::consts::ARCH`).
pub fn arch_label(os: &str, arch: &str) -> String {
    match (os, arch) {
        ("macos", "aarch64") => "apple_silicon".into(),
        (_, "x86_64") => "x86_64".into(),
        (_, "aarch64") => "arm64".into(),
        (_, other) => other.into(),
    }
}

/// The CPU (or board) name from `/proc/cpuinfo`; `None` when it names nothing.
///
/// x86 has `model name`. ARM kernels vary: 32-bit ones give a generic `model name` such as
/// "ARMv7 Processor rev 3 (v7l)", Raspberry Pis add `Model` (the board) and `Hardware` (the SoC),
/// and ACPI servers (Graviton, Grace, Ampere) give only `CPU implementer`/`CPU part`. So: a
/// specific `model name`, else `Model`, else `Hardware`, else the core named from its part
/// number, else the generic `model name`.
pub fn parse_cpuinfo(text: &str) -> Option<String> {
    let mut model_name = None;
    let mut board = None;
    let mut hardware = None;
    let mut implementer = None;
    let mut part = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let slot = match key.trim() {
            "model name" => &mut model_name,
            "Model" => &mut board,
            "Hardware" => &mut hardware,
            "CPU implementer" => &mut implementer,
            "CPU part" => &mut part,
            _ => continue,
        };
        slot.get_or_insert(value);
    }
    let generic = |name: &&str| name.starts_with("ARMv") && name.contains("Processor");
    model_name
        .filter(|n| !generic(n))
        .or(board)
        .or(hardware)
        .map(str::to_string)
        .or_else(|| arm_core_name(implementer?, part?))
        .or_else(|| model_name.map(str::to_string))
}

/// Arm Ltd. core names by `CPU part` (implementer 0x41), for servers whose cpuinfo names nothing.
fn arm_core_name(implementer: &str, part: &str) -> Option<String> {
    if !implementer.eq_ignore_ascii_case("0x41") {
        return None;
    }
    let name = match part.to_ascii_lowercase().as_str() {
        "0xd03" => "Cortex-A53",
        "0xd05" => "Cortex-A55",
        "0xd07" => "Cortex-A57",
        "0xd08" => "Cortex-A72",
        "0xd0b" => "Cortex-A76",
        "0xd0c" => "Neoverse-N1",
        "0xd40" => "Neoverse-V1",
        "0xd41" => "Cortex-A78",
        "0xd49" => "Neoverse-N2",
        "0xd4f" => "Neoverse-V2",
        "0xd84" => "Neoverse-V3",
        "0xd85" => "Cortex-X925",
        "0xd87" => "Cortex-A725",
        _ => return None,
    };
    Some(format!("ARM {name}"))
}

/// The reported chip: the CPU name, plus `" + <GPU name>"` for the first NVIDIA GPU, as
/// ollama-herd's Linux agent builds it from nvidia-smi.
pub fn chip_string(cpu: Option<&str>, first_gpu: Option<&str>) -> String {
    let cpu = cpu.map(str::trim).filter(|s| !s.is_empty());
    let gpu = first_gpu.map(str::trim).filter(|s| !s.is_empty());
    match (cpu, gpu) {
        (Some(c), Some(g)) => format!("{c} + {g}"),
        (Some(c), None) => c.to_string(),
        (None, Some(g)) => g.to_string(),
        (None, None) => String::new(),
    }
}

/// `/proc/device-tree/model` (ARM boards without a `Model` line): NUL-terminated.
pub fn parse_device_tree_model(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let name = text.trim_end_matches('\0').trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 183\n\
        model name\t: 13th Gen Intel(R) Core(TM) i9-13900K\nstepping\t: 1\ncpu MHz\t\t: 3000.000\n\n\
        processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: 13th Gen Intel(R) Core(TM) i9-13900K\n";

    /// Raspberry Pi 4, Raspberry Pi OS 64-bit (no `model name`).
    const PI4_64: &str = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n\
        CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n\
        CPU revision\t: 3\n\nHardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000abcdef01\n\
        Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n";

    /// Raspberry Pi 3, 32-bit kernel (generic `model name`).
    const PI3_32: &str = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nBogoMIPS\t: 38.40\n\
        Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\n\
        CPU implementer\t: 0x41\nCPU part\t: 0xd03\n\nHardware\t: BCM2835\nRevision\t: a02082\n\
        Model\t\t: Raspberry Pi 3 Model B Rev 1.2\n";

    /// NVIDIA Grace (ACPI, no names at all).
    const GRACE: &str = "processor\t: 0\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2\n\
        CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd4f\nCPU revision\t: 0\n";

    #[test]
    fn x86_model_name() {
        assert_eq!(parse_cpuinfo(X86).as_deref(), Some("13th Gen Intel(R) Core(TM) i9-13900K"));
    }

    #[test]
    fn raspberry_pi_board_name() {
        assert_eq!(parse_cpuinfo(PI4_64).as_deref(), Some("Raspberry Pi 4 Model B Rev 1.4"));
        assert_eq!(parse_cpuinfo(PI3_32).as_deref(), Some("Raspberry Pi 3 Model B Rev 1.2"));
        // A Pi kernel without the Model line falls back to the SoC.
        let no_model: String = PI3_32.lines().filter(|l| !l.starts_with("Model")).collect::<Vec<_>>().join("\n");
        assert_eq!(parse_cpuinfo(&no_model).as_deref(), Some("BCM2835"));
    }

    #[test]
    fn arm_server_named_from_its_part_number() {
        assert_eq!(parse_cpuinfo(GRACE).as_deref(), Some("ARM Neoverse-V2"));
        let generic_only = "model name\t: ARMv7 Processor rev 5 (v7l)\nCPU implementer\t: 0x51\n";
        assert_eq!(parse_cpuinfo(generic_only).as_deref(), Some("ARMv7 Processor rev 5 (v7l)"));
    }

    #[test]
    fn nothing_to_name() {
        assert_eq!(parse_cpuinfo(""), None);
        assert_eq!(parse_cpuinfo("processor\t: 0\nmodel name\t:\n"), None);
    }

    #[test]
    fn arch_labels() {
        assert_eq!(arch_label("macos", "aarch64"), "apple_silicon");
        assert_eq!(arch_label("macos", "x86_64"), "x86_64");
        assert_eq!(arch_label("linux", "aarch64"), "arm64");
        assert_eq!(arch_label("windows", "x86_64"), "x86_64");
        assert_eq!(arch_label("linux", "riscv64"), "riscv64");
    }

    #[test]
    fn chip_strings() {
        assert_eq!(chip_string(Some("AMD EPYC 9654"), Some("NVIDIA H200")), "AMD EPYC 9654 + NVIDIA H200");
        assert_eq!(chip_string(Some("Apple M3 Ultra"), None), "Apple M3 Ultra");
        assert_eq!(chip_string(None, Some("NVIDIA GB10")), "NVIDIA GB10");
        assert_eq!(chip_string(Some("  "), None), "");
        assert_eq!(parse_device_tree_model(b"NVIDIA Jetson AGX Orin\0").as_deref(), Some("NVIDIA Jetson AGX Orin"));
        assert_eq!(parse_device_tree_model(b"\0"), None);
    }
}
