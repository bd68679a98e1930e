//! Machine probes: what a node reports about the machine itself (CPU, memory and its pressure,
//! disk, thermal state, NVIDIA GPUs, chip name and memory bandwidth, identity). Everything that
//! interprets text or library answers is a pure function in a submodule, tested on recorded data;
//! [`MachineProbe`] only reads files and asks sysinfo and NVML, doing the expensive discovery
//! once in [`MachineProbe::new`] so a sample every 5 s stays well under 0.5 % of a core.

mod bandwidth;
mod chip;
mod gpu;
mod memory;
mod platform;
mod thermal;

pub use bandwidth::bandwidth_for_chip;
pub use chip::{arch_label, chip_string, parse_cpuinfo, parse_device_tree_model};
pub use gpu::{bandwidth_from_bus_gbps, gpu_from_reading, node_bandwidth_gbps, GpuReading, NvmlProbe, VramReading};
pub use memory::{
    decide_pressure, macos_pressure_level, parse_psi, psi_pressure, used_pressure, Psi, PsiLine, PSI_FULL_CRITICAL_PCT,
    PSI_SOME_CRITICAL_PCT, PSI_SOME_WARN_PCT, USED_CRITICAL_PCT, USED_WARN_PCT,
};
pub use thermal::{parse_millidegrees, thermal_reading, ThermalReading, ThermalSensors, ThermalState};

use herd_core::fleet::heartbeat::{Cpu, Gpu, Memory};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use sysinfo::{DiskRefreshKind, Disks, System};

/// Bytes per reported "GB". ollama-herd divides psutil's bytes by 1024³ for memory and disk, and
/// the router's memory tiers (32, 128 GB...) were tuned on those figures, so herd does the same.
/// (VRAM stays in bytes; model sizes from Ollama are decimal.)
pub const BYTES_PER_GB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Where Linux publishes thermal zones and hwmon sensors.
const SYS_CLASS: &str = "/sys/class";
/// Linux's memory PSI file.
const PSI_MEMORY: &str = "/proc/pressure/memory";
/// Mixed into the machine-id hash, as machine-id(5) asks: the raw id must not leave the machine,
/// and a keyed hash cannot be correlated with other applications' ids.
const MACHINE_ID_KEY: &[u8] = b"herd-node machine-id v1\n";

/// One sample of the machine, in the heartbeat's shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineSample {
    /// `apple_silicon` (macOS arm64), `x86_64`, `arm64`, else `std::env::consts::ARCH`.
    pub arch: String,
    /// CPU (or board) name, plus `" + <first NVIDIA GPU>"`; "" when unknown.
    pub chip: String,
    /// Fastest GPU's bandwidth from NVML, else the chip table; 0 = unknown.
    pub memory_bandwidth_gbps: f64,
    /// Physical cores and utilisation since the previous sample.
    pub cpu: Cpu,
    /// RAM and swap in GB of 1024³ bytes (see [`BYTES_PER_GB`]), and pressure.
    pub memory: Memory,
    /// `{"state": "nominal"|"warning"|"critical"|"unknown", "temperature_c": f64|null, "source"}`.
    pub thermal: serde_json::Value,
    /// `{"total_gb", "used_gb", "available_gb"}` of the disk holding the models folder; `null`
    /// when no disk could be found.
    pub disk: serde_json::Value,
    /// NVIDIA GPUs with their own memory; empty without a driver.
    pub gpus: Vec<Gpu>,
    /// Keyed SHA-256 of the OS machine identity, first 16 bytes in hex; `None` when the OS has
    /// none.
    pub machine_id: Option<String>,
}

/// Samples the machine. Create once at start (it finds sensors, disks and GPUs, and loads NVML);
/// call [`MachineProbe::sample`] each heartbeat. Blocking but short: file reads, NVML calls, and
/// on macOS one `sysctl` process.
pub struct MachineProbe {
    system: System,
    disks: Disks,
    disk: Option<usize>,
    nvml: Option<NvmlProbe>,
    thermal: ThermalSensors,
    arch: String,
    chip: String,
    cores_physical: u32,
    machine_id: Option<String>,
}

impl std::fmt::Debug for MachineProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineProbe")
            .field("chip", &self.chip)
            .field("disk", &self.disk.map(|i| self.disks.list()[i].mount_point()))
            .field("nvml", &self.nvml)
            .field("thermal_sensors", &self.thermal.len())
            .finish()
    }
}

impl MachineProbe {
    /// Finds what can be found once: the disk holding `models_dir` (or the nearest existing
    /// folder above it; "/" if none matches), thermal sensors, NVIDIA GPUs (one `info` log line
    /// either way), the chip name and the machine identity. Primes the CPU counters so the first
    /// sample has a utilisation figure.
    pub fn new(models_dir: &Path) -> MachineProbe {
        let mut system = System::new();
        system.refresh_cpu_usage();
        system.refresh_memory();
        let cores_physical = System::physical_core_count()
            .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
            .unwrap_or(1)
            .max(1);
        let disks = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage());
        let mounts: Vec<&Path> = disks.list().iter().map(|d| d.mount_point()).collect();
        let disk = disk_for(&resolve_dir(models_dir), &mounts);
        let nvml = if cfg!(target_os = "macos") { None } else { NvmlProbe::init() };
        let thermal = if cfg!(target_os = "linux") {
            ThermalSensors::discover(Path::new(SYS_CLASS))
        } else {
            ThermalSensors::default()
        };
        let chip = chip_string(cpu_name(&system).as_deref(), nvml.as_ref().and_then(NvmlProbe::first_name));
        // Prime again now that the start-up work (disk list, NVML, sensors) is done, so the
        // first sample measures the machine rather than this probe starting.
        system.refresh_cpu_usage();
        MachineProbe {
            system,
            disks,
            disk,
            nvml,
            thermal,
            arch: arch_label(std::env::consts::OS, std::env::consts::ARCH),
            chip,
            cores_physical: u32::try_from(cores_physical).unwrap_or(u32::MAX),
            machine_id: machine_id(),
        }
    }

    /// The chip string found at start.
    pub fn chip(&self) -> &str {
        &self.chip
    }

    /// One sample: CPU usage since the previous one, memory, pressure, disk, GPUs and thermal.
    pub fn sample(&mut self) -> MachineSample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let gpus: Vec<Gpu> =
            self.nvml.as_ref().map(|n| n.read().iter().filter_map(gpu_from_reading).collect()).unwrap_or_default();
        let thermal = thermal_reading(self.thermal.read(), &gpus).to_json();
        MachineSample {
            arch: self.arch.clone(),
            chip: self.chip.clone(),
            memory_bandwidth_gbps: node_bandwidth_gbps(&gpus, &self.chip),
            cpu: Cpu {
                cores_physical: self.cores_physical,
                utilization_pct: round_to(f64::from(self.system.global_cpu_usage()), 1),
            },
            memory: self.memory(),
            thermal,
            disk: self.disk(),
            gpus,
            machine_id: self.machine_id.clone(),
        }
    }

    fn memory(&self) -> Memory {
        let s = &self.system;
        let (total, available) = (s.total_memory(), s.available_memory());
        let (pressure, compressed) = if cfg!(target_os = "macos") {
            platform::macos_memory()
        } else {
            // PSI where the kernel has it (Linux ≥ 4.20 with PSI enabled); Windows has neither.
            let psi = std::fs::read_to_string(PSI_MEMORY).ok().and_then(|t| parse_psi(&t));
            (decide_pressure(psi.as_ref(), total, available), 0)
        };
        Memory {
            total_gb: gb(total),
            used_gb: gb(total.saturating_sub(available)),
            available_gb: gb(available),
            pressure,
            wired_gb: 0.0,
            compressed_gb: gb(compressed),
            swap_used_gb: gb(s.used_swap()),
            swap_total_gb: gb(s.total_swap()),
        }
    }

    fn disk(&mut self) -> serde_json::Value {
        let Some(disk) = self.disk.and_then(|i| self.disks.list_mut().get_mut(i)) else {
            return serde_json::Value::Null;
        };
        disk.refresh_specifics(DiskRefreshKind::nothing().with_storage());
        let (total, available) = (disk.total_space(), disk.available_space());
        serde_json::json!({
            "total_gb": gb(total),
            "used_gb": gb(total.saturating_sub(available)),
            "available_gb": gb(available),
        })
    }
}

/// Bytes to reported GB, two decimals as ollama-herd rounds.
fn gb(bytes: u64) -> f64 {
    round_to(bytes as f64 / BYTES_PER_GB, 2)
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (v * scale).round() / scale
}

/// The CPU name: macOS `sysctl`, Linux `/proc/cpuinfo` (then the device tree), else sysinfo's
/// brand string.
fn cpu_name(system: &System) -> Option<String> {
    let os_name = if cfg!(target_os = "macos") {
        platform::macos_chip()
    } else if cfg!(target_os = "linux") {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| parse_cpuinfo(&t))
            .or_else(|| std::fs::read("/proc/device-tree/model").ok().and_then(|b| parse_device_tree_model(&b)))
    } else {
        None
    };
    os_name.or_else(|| system.cpus().first().map(|c| c.brand().trim().to_string()).filter(|b| !b.is_empty()))
}

/// This machine's identity as heartbeats report it (a keyed hash of the OS's machine id).
pub fn machine_id() -> Option<String> {
    os_machine_id().as_deref().and_then(machine_id_hash)
}

/// The OS's stable machine identity, raw (never reported as is).
fn os_machine_id() -> Option<String> {
    if cfg!(target_os = "macos") {
        platform::macos_machine_id()
    } else if cfg!(target_os = "windows") {
        platform::windows_machine_id()
    } else {
        ["/etc/machine-id", "/var/lib/dbus/machine-id"].iter().find_map(|p| std::fs::read_to_string(p).ok())
    }
}

/// Keyed SHA-256 of a raw machine id, first 16 bytes as lowercase hex. `None` for an empty or
/// `uninitialized` id (systemd's placeholder during first boot).
pub fn machine_id_hash(raw: &str) -> Option<String> {
    let id = raw.trim();
    if id.is_empty() || id == "uninitialized" {
        return None;
    }
    let digest = Sha256::new().chain_update(MACHINE_ID_KEY).chain_update(id.as_bytes()).finalize();
    Some(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// The folder to look the disk up by: the nearest existing ancestor of `dir`, with symlinks
/// resolved (a models folder is often a link to a bigger disk), and Windows' `\\?\` prefix removed
/// so it compares with mount points such as `C:\`.
fn resolve_dir(dir: &Path) -> PathBuf {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(dir);
    let real = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    match real.to_str().and_then(|s| s.strip_prefix(r"\\?\")) {
        Some(stripped) => PathBuf::from(stripped),
        None => real,
    }
}

/// Index of the mount that holds `dir`: the longest mount point it lies under; else `/`.
pub fn disk_for(dir: &Path, mount_points: &[&Path]) -> Option<usize> {
    let under = (0..mount_points.len())
        .filter(|&i| dir.starts_with(mount_points[i]))
        .max_by_key(|&i| mount_points[i].components().count());
    under.or_else(|| mount_points.iter().position(|m| *m == Path::new("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_machine() {
        let mut probe = MachineProbe::new(Path::new("/"));
        let s = probe.sample();
        assert!(s.memory.total_gb > 0.0, "{s:?}");
        assert!(s.memory.available_gb > 0.0 && s.memory.available_gb <= s.memory.total_gb, "{s:?}");
        assert!(s.cpu.cores_physical > 0, "{s:?}");
        assert!((0.0..=100.0).contains(&s.cpu.utilization_pct), "{s:?}");
        assert_eq!(s.arch, arch_label(std::env::consts::OS, std::env::consts::ARCH));
        assert!(s.disk["total_gb"].as_f64().unwrap() > 0.0, "{s:?}");
        assert!(["nominal", "warning", "critical", "unknown"].contains(&s.thermal["state"].as_str().unwrap()));
        assert!(s.memory_bandwidth_gbps >= 0.0);
        // A second sample is as good as the first.
        let again = probe.sample();
        assert_eq!((again.chip, again.machine_id), (s.chip, s.machine_id));
    }

    #[test]
    fn disk_is_the_longest_mount_above_the_folder() {
        let mounts = [Path::new("/"), Path::new("/data"), Path::new("/data/ollama"), Path::new("/dat")];
        assert_eq!(disk_for(Path::new("/data/ollama/models"), &mounts), Some(2));
        assert_eq!(disk_for(Path::new("/data/other"), &mounts), Some(1));
        assert_eq!(disk_for(Path::new("/database"), &mounts), Some(0));
        assert_eq!(disk_for(Path::new("/home/me/.ollama"), &mounts), Some(0));
        assert_eq!(disk_for(Path::new("/x"), &[Path::new("/boot")]), None);
    }

    #[test]
    fn missing_models_folder_uses_the_nearest_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let resolved = resolve_dir(&dir.path().join("no/such/models"));
        assert_eq!(resolved, std::fs::canonicalize(dir.path()).unwrap());
    }

    #[test]
    fn machine_id_is_a_keyed_hash() {
        let id = machine_id_hash("3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(machine_id_hash("3d1219c7c4c5404aaa1f6d2a48adfda4"), Some(id.clone()));
        assert_ne!(machine_id_hash("3d1219c7c4c5404aaa1f6d2a48adfda5"), Some(id.clone()));
        // Not the plain hash of the id: the raw id cannot be matched against other programs'.
        let plain: String =
            Sha256::digest(b"3d1219c7c4c5404aaa1f6d2a48adfda4")[..16].iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(id, plain);
        assert_eq!(machine_id_hash(""), None);
        assert_eq!(machine_id_hash("uninitialized\n"), None);
    }

    #[test]
    fn gigabytes_are_binary_as_ollama_herd_sends_them() {
        assert_eq!(gb(64 * 1024 * 1024 * 1024), 64.0);
        assert_eq!(gb(150_754_820_096), 140.4);
        assert_eq!(gb(0), 0.0);
    }
}
