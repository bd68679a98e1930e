//! Thermal state: CPU sensors found once under `/sys/class` (thermal zones and hwmon), read each
//! sample, combined with the GPUs' NVML temperatures into the heartbeat's `thermal` object.

use herd_core::fleet::heartbeat::Gpu;
use std::fs;
use std::path::{Path, PathBuf};

/// A sensor at or above this is a warning (ollama-herd's threshold).
pub const WARN_C: f64 = 85.0;
/// A CPU at or above this is critical: Intel's usual Tjmax. Lower would flag every Zen 4 under
/// load, which runs at 95 °C by design.
pub const CPU_CRITICAL_C: f64 = 100.0;
/// A GPU at or above this is critical: past the slowdown point of current NVIDIA cards.
pub const GPU_CRITICAL_C: f64 = 95.0;

/// Sensor names (thermal zone `type` or hwmon `name`, lowercase) that measure the CPU package. When
/// any is present only they count, as ollama-herd prefers coretemp/k10temp/zenpower/cpu_thermal.
const CPU_SENSORS: &[&str] = &["x86_pkg_temp", "coretemp", "k10temp", "zenpower", "cpu", "soc"];

/// The thermal state as ollama-herd names it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThermalState {
    /// No sensor could be read.
    Unknown,
    /// Fine.
    Nominal,
    /// Hot ([`WARN_C`]).
    Warning,
    /// Throttling or about to.
    Critical,
}

impl ThermalState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ThermalState::Unknown => "unknown",
            ThermalState::Nominal => "nominal",
            ThermalState::Warning => "warning",
            ThermalState::Critical => "critical",
        }
    }
}

/// What the heartbeat reports: the state, the reading behind it and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ThermalReading {
    /// Worst state over all sensors.
    pub state: ThermalState,
    /// The temperature of the sensor that set the state, °C.
    pub temperature_c: Option<f64>,
    /// `thermal_zone:<type>`, `hwmon:<name>`, `nvml:gpu<index>`, or `none`.
    pub source: String,
}

impl ThermalReading {
    /// `{"state", "temperature_c", "source"}` as ollama-herd sends it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "state": self.state.as_str(),
            "temperature_c": self.temperature_c.map(|t| (t * 10.0).round() / 10.0),
            "source": self.source,
        })
    }
}

/// The CPU sensors of this machine, found once; reading them costs one small file read each.
#[derive(Clone, Debug, Default)]
pub struct ThermalSensors {
    sensors: Vec<(PathBuf, String)>,
}

impl ThermalSensors {
    /// Finds sensors under `sys_class` (normally `/sys/class`): `thermal/thermal_zone*/{type,temp}`
    /// and `hwmon/hwmon*/{name,temp1_input}`. Keeps only CPU sensors when there are any.
    pub fn discover(sys_class: &Path) -> ThermalSensors {
        let mut found = Vec::new();
        for (dir, label_file, temp_file, prefix) in
            [("thermal", "type", "temp", "thermal_zone"), ("hwmon", "name", "temp1_input", "hwmon")]
        {
            for entry in sorted_entries(&sys_class.join(dir), prefix) {
                let temp = entry.join(temp_file);
                let Ok(label) = fs::read_to_string(entry.join(label_file)) else { continue };
                if temp.exists() {
                    found.push((temp, format!("{prefix}:{}", label.trim())));
                }
            }
        }
        let is_cpu = |source: &str| {
            let name = source.split_once(':').map_or(source, |(_, n)| n).to_ascii_lowercase();
            CPU_SENSORS.iter().any(|c| name.contains(c))
        };
        if found.iter().any(|(_, s)| is_cpu(s)) {
            found.retain(|(_, s)| is_cpu(s));
        }
        ThermalSensors { sensors: found }
    }

    /// The number of sensors found.
    pub fn len(&self) -> usize {
        self.sensors.len()
    }

    /// Whether none were found.
    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }

    /// The hottest valid reading now, °C, with its source.
    pub fn read(&self) -> Option<(f64, &str)> {
        self.sensors
            .iter()
            .filter_map(|(path, source)| {
                let t = parse_millidegrees(&fs::read_to_string(path).ok()?)?;
                Some((t, source.as_str()))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }
}

fn sorted_entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else { return Vec::new() };
    let mut entries: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries
}

/// A sysfs temperature (millidegrees Celsius) in °C. Readings outside (0, 150] °C are broken
/// sensors (zones report 0, negative or absurd values when off) and are ignored.
pub fn parse_millidegrees(text: &str) -> Option<f64> {
    let milli: i64 = text.trim().parse().ok()?;
    let c = milli as f64 / 1000.0;
    (c > 0.0 && c <= 150.0).then_some(c)
}

/// Combines the CPU reading and the GPUs' temperatures: the worst state wins, and among equal
/// states the hottest sensor. No reading at all is `unknown` (always so on macOS, where reading
/// sensors needs root).
pub fn thermal_reading(cpu: Option<(f64, &str)>, gpus: &[Gpu]) -> ThermalReading {
    let cpu = cpu.map(|(t, s)| (state_for(t, CPU_CRITICAL_C), t, s.to_string()));
    let gpus = gpus.iter().filter_map(|g| {
        let t = g.temperature_c.filter(|t| *t > 0.0)?;
        Some((state_for(t, GPU_CRITICAL_C), t, format!("nvml:gpu{}", g.index)))
    });
    cpu.into_iter().chain(gpus).max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))).map_or_else(
        || ThermalReading { state: ThermalState::Unknown, temperature_c: None, source: "none".into() },
        |(state, t, source)| ThermalReading { state, temperature_c: Some(t), source },
    )
}

fn state_for(temp_c: f64, critical_c: f64) -> ThermalState {
    if temp_c >= critical_c {
        ThermalState::Critical
    } else if temp_c >= WARN_C {
        ThermalState::Warning
    } else {
        ThermalState::Nominal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn gpu(index: u32, temperature_c: Option<f64>) -> Gpu {
        Gpu { index, temperature_c, ..Gpu::default() }
    }

    /// A laptop: package sensor, ACPI zone and Wi-Fi; only the package counts.
    #[test]
    fn thermal_zones_prefer_the_cpu_package() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "thermal/thermal_zone0/type", "acpitz\n");
        write(dir.path(), "thermal/thermal_zone0/temp", "98000\n");
        write(dir.path(), "thermal/thermal_zone1/type", "x86_pkg_temp\n");
        write(dir.path(), "thermal/thermal_zone1/temp", "54000\n");
        write(dir.path(), "thermal/thermal_zone2/type", "iwlwifi_1\n");
        write(dir.path(), "thermal/thermal_zone2/temp", "-274000\n");
        write(dir.path(), "thermal/cooling_device0/type", "Processor\n");
        let sensors = ThermalSensors::discover(dir.path());
        assert_eq!(sensors.len(), 1);
        assert_eq!(sensors.read(), Some((54.0, "thermal_zone:x86_pkg_temp")));
        let r = thermal_reading(sensors.read(), &[]);
        assert_eq!(r.state, ThermalState::Nominal);
        assert_eq!(
            r.to_json(),
            serde_json::json!({"state": "nominal", "temperature_c": 54.0, "source": "thermal_zone:x86_pkg_temp"})
        );
    }

    /// An AMD desktop exposes k10temp only through hwmon.
    #[test]
    fn hwmon_cpu_driver() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "hwmon/hwmon0/name", "nvme\n");
        write(dir.path(), "hwmon/hwmon0/temp1_input", "41850\n");
        write(dir.path(), "hwmon/hwmon1/name", "k10temp\n");
        write(dir.path(), "hwmon/hwmon1/temp1_input", "87125\n");
        let sensors = ThermalSensors::discover(dir.path());
        assert_eq!(sensors.read(), Some((87.125, "hwmon:k10temp")));
        assert_eq!(thermal_reading(sensors.read(), &[]).state, ThermalState::Warning);
    }

    /// No CPU sensor: any zone will do (a Raspberry Pi's is named cpu-thermal and would be
    /// preferred; this is a board with only a generic zone).
    #[test]
    fn any_zone_when_no_cpu_sensor() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "thermal/thermal_zone0/type", "acpitz\n");
        write(dir.path(), "thermal/thermal_zone0/temp", "27800\n");
        write(dir.path(), "thermal/thermal_zone1/type", "pch_skylake\n");
        write(dir.path(), "thermal/thermal_zone1/temp", "broken\n");
        let sensors = ThermalSensors::discover(dir.path());
        assert_eq!(sensors.len(), 2);
        assert_eq!(sensors.read(), Some((27.8, "thermal_zone:acpitz")));
    }

    #[test]
    fn no_sysfs_means_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let sensors = ThermalSensors::discover(&dir.path().join("absent"));
        assert!(sensors.is_empty());
        assert_eq!(sensors.read(), None);
        let r = thermal_reading(None, &[gpu(0, None)]);
        assert_eq!(r.to_json(), serde_json::json!({"state": "unknown", "temperature_c": null, "source": "none"}));
    }

    #[test]
    fn millidegrees() {
        assert_eq!(parse_millidegrees("45000\n"), Some(45.0));
        assert_eq!(parse_millidegrees("0"), None);
        assert_eq!(parse_millidegrees("-40000"), None);
        assert_eq!(parse_millidegrees("200000"), None);
        assert_eq!(parse_millidegrees(""), None);
    }

    #[test]
    fn gpus_join_the_decision() {
        // A hot GPU outranks a cool CPU.
        let r = thermal_reading(Some((50.0, "thermal_zone:x86_pkg_temp")), &[gpu(0, Some(60.0)), gpu(1, Some(88.0))]);
        assert_eq!((r.state, r.temperature_c, r.source.as_str()), (ThermalState::Warning, Some(88.0), "nvml:gpu1"));
        // A CPU at 95 (Zen 4 under load) is a warning; a GPU at 95 is critical.
        let r = thermal_reading(Some((95.0, "hwmon:k10temp")), &[gpu(0, Some(95.0))]);
        assert_eq!((r.state, r.source.as_str()), (ThermalState::Critical, "nvml:gpu0"));
        let r = thermal_reading(Some((95.0, "hwmon:k10temp")), &[]);
        assert_eq!(r.state, ThermalState::Warning);
        // GPUs alone (a container without /sys/class/thermal).
        let r = thermal_reading(None, &[gpu(0, Some(41.0))]);
        assert_eq!((r.state, r.temperature_c), (ThermalState::Nominal, Some(41.0)));
    }
}
