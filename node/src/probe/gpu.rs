//! NVIDIA GPUs through NVML, loaded at run time: a plain [`GpuReading`] per device (each field
//! may fail on its own), turned into the heartbeat's [`Gpu`] by a pure function.

use super::bandwidth::bandwidth_for_chip;
use herd_core::fleet::heartbeat::Gpu;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::Nvml;

/// Frame-buffer memory as NVML reports it (`nvmlDeviceGetMemoryInfo_v2`), bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct VramReading {
    /// Installed.
    pub total_bytes: u64,
    /// Allocated.
    pub used_bytes: u64,
    /// Unallocated.
    pub free_bytes: u64,
}

/// What NVML said about one GPU. `None` where that query failed (`NotSupported` for power on
/// many consumer cards, memory on unified-memory parts such as GB10).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuReading {
    /// NVML index.
    pub index: u32,
    /// Product name, e.g. "NVIDIA H200".
    pub name: Option<String>,
    /// Frame-buffer memory.
    pub vram: Option<VramReading>,
    /// GPU utilisation over NVML's last sample period, percent.
    pub utilization_gpu_pct: Option<u32>,
    /// Die temperature, °C.
    pub temperature_c: Option<u32>,
    /// Board power draw, milliwatts.
    pub power_mw: Option<u32>,
    /// Memory bus width, bits.
    pub memory_bus_width_bits: Option<u32>,
    /// Maximum memory clock, MHz.
    pub max_memory_clock_mhz: Option<u32>,
}

/// Memory bandwidth from the bus: width (bits) × maximum memory clock (MHz) × 2 (double data rate)
/// / 8 bits per byte / 1000, in GB/s. NVML reports the effective clock of GDDR6X/GDDR7 already
/// divided so this holds for them too (RTX 4090: 384 bits × 10 501 MHz → 1008 GB/s). `None` when
/// either figure is missing or zero.
pub fn bandwidth_from_bus_gbps(bus_width_bits: Option<u32>, max_memory_clock_mhz: Option<u32>) -> Option<f64> {
    let (bits, mhz) = (bus_width_bits?, max_memory_clock_mhz?);
    (bits > 0 && mhz > 0).then(|| f64::from(bits) * f64::from(mhz) * 2.0 / 8.0 / 1000.0)
}

/// The heartbeat's view of a GPU. `None` when NVML could not say how much memory it has: those are
/// integrated or unified-memory GPUs (GB10, Jetson), and reporting them with 0 bytes of VRAM would
/// tell the router the node has no room at all; left out, the node is judged by its system RAM,
/// which is what such a GPU uses. Every other field that failed is `None` or 0, never a reason to
/// drop the GPU. Bandwidth comes from the bus, else from the name table.
pub fn gpu_from_reading(r: &GpuReading) -> Option<Gpu> {
    let vram = r.vram?;
    let name = r.name.clone().unwrap_or_default();
    let memory_bandwidth_gbps = bandwidth_from_bus_gbps(r.memory_bus_width_bits, r.max_memory_clock_mhz)
        .unwrap_or_else(|| bandwidth_for_chip(&name));
    Some(Gpu {
        index: r.index,
        name,
        vram_total_bytes: vram.total_bytes,
        vram_used_bytes: vram.used_bytes,
        vram_free_bytes: vram.free_bytes,
        utilization_pct: r.utilization_gpu_pct.map_or(0.0, f64::from),
        temperature_c: r.temperature_c.map(f64::from),
        power_w: r.power_mw.map(|mw| f64::from(mw) / 1000.0),
        memory_bandwidth_gbps,
    })
}

/// The node's memory bandwidth: the fastest GPU's, else the chip table's; 0 when unknown.
pub fn node_bandwidth_gbps(gpus: &[Gpu], chip: &str) -> f64 {
    let gpu = gpus.iter().map(|g| g.memory_bandwidth_gbps).fold(0.0, f64::max);
    if gpu > 0.0 {
        gpu
    } else {
        bandwidth_for_chip(chip)
    }
}

/// Static per-GPU facts, read once.
#[derive(Clone, Debug)]
struct GpuStatic {
    name: Option<String>,
    memory_bus_width_bits: Option<u32>,
    max_memory_clock_mhz: Option<u32>,
}

/// NVML, loaded once. Per sample it asks only for what changes (memory, utilisation,
/// temperature, power).
pub struct NvmlProbe {
    nvml: Nvml,
    statics: Vec<GpuStatic>,
}

impl std::fmt::Debug for NvmlProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlProbe").field("gpus", &self.statics.len()).finish()
    }
}

impl NvmlProbe {
    /// Loads `libnvidia-ml` and lists the GPUs. With no driver (or no GPU) logs one line and
    /// gives `None`; never panics.
    pub fn init() -> Option<NvmlProbe> {
        let nvml = match Nvml::init() {
            Ok(n) => n,
            Err(e) => {
                tracing::info!("no NVIDIA GPUs: NVML not available ({e})");
                return None;
            }
        };
        let count = match nvml.device_count() {
            Ok(c) => c,
            Err(e) => {
                tracing::info!("no NVIDIA GPUs: NVML cannot count devices ({e})");
                return None;
            }
        };
        let statics = (0..count)
            .map(|i| match nvml.device_by_index(i) {
                Ok(d) => {
                    let name = d.name().ok();
                    if let Err(e) = d.memory_info() {
                        // Unified memory (GB10, Jetson) or a driver older than R510 (no
                        // nvmlDeviceGetMemoryInfo_v2): the router will judge the node by its RAM.
                        tracing::info!("GPU {i} {name:?}: NVML reports no memory ({e}); not listed as a GPU");
                    }
                    GpuStatic {
                        name,
                        memory_bus_width_bits: d.memory_bus_width().ok(),
                        max_memory_clock_mhz: d.max_clock_info(Clock::Memory).ok(),
                    }
                }
                Err(e) => {
                    tracing::info!("GPU {i}: NVML cannot open it ({e})");
                    GpuStatic { name: None, memory_bus_width_bits: None, max_memory_clock_mhz: None }
                }
            })
            .collect::<Vec<_>>();
        let driver = nvml.sys_driver_version().unwrap_or_default();
        let names: Vec<&str> = statics.iter().filter_map(|s| s.name.as_deref()).collect();
        tracing::info!("NVML {driver}: {count} NVIDIA GPU(s) {names:?}");
        Some(NvmlProbe { nvml, statics })
    }

    /// The first GPU's name, for the chip string.
    pub fn first_name(&self) -> Option<&str> {
        self.statics.iter().find_map(|s| s.name.as_deref())
    }

    /// One reading per GPU found at start. A GPU whose handle fails now (fallen off the bus) gives
    /// a reading with only its static facts, which [`gpu_from_reading`] leaves out.
    pub fn read(&self) -> Vec<GpuReading> {
        (0u32..)
            .zip(&self.statics)
            .map(|(index, s)| {
                let mut r = GpuReading {
                    index,
                    name: s.name.clone(),
                    memory_bus_width_bits: s.memory_bus_width_bits,
                    max_memory_clock_mhz: s.max_memory_clock_mhz,
                    ..GpuReading::default()
                };
                if let Ok(d) = self.nvml.device_by_index(index) {
                    r.vram = d.memory_info().ok().map(|m| VramReading {
                        total_bytes: m.total,
                        used_bytes: m.used,
                        free_bytes: m.free,
                    });
                    r.utilization_gpu_pct = d.utilization_rates().ok().map(|u| u.gpu);
                    r.temperature_c = d.temperature(TemperatureSensor::Gpu).ok();
                    r.power_mw = d.power_usage().ok();
                }
                r
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded on an H200 with driver 580.159.04 through nvml-wrapper 0.13.
    fn h200() -> GpuReading {
        GpuReading {
            index: 0,
            name: Some("NVIDIA H200".into()),
            vram: Some(VramReading {
                total_bytes: 150_754_820_096,
                used_bytes: 584_318_976,
                free_bytes: 150_170_501_120,
            }),
            utilization_gpu_pct: Some(0),
            temperature_c: Some(29),
            power_mw: Some(76_432),
            memory_bus_width_bits: Some(6016),
            max_memory_clock_mhz: Some(3201),
        }
    }

    #[test]
    fn h200_bandwidth_is_its_rated_four_point_eight_terabytes() {
        let gpu = gpu_from_reading(&h200()).unwrap();
        // 6016 × 3201 × 2 / 8 / 1000 = 4814.304 GB/s.
        assert!((gpu.memory_bandwidth_gbps - 4814.304).abs() < 1e-6, "{}", gpu.memory_bandwidth_gbps);
        assert!((4700.0..4900.0).contains(&gpu.memory_bandwidth_gbps));
        assert_eq!(gpu.vram_total_bytes, 150_754_820_096);
        assert_eq!(gpu.vram_used_bytes, 584_318_976);
        assert_eq!(gpu.vram_free_bytes, 150_170_501_120);
        assert_eq!(gpu.name, "NVIDIA H200");
        assert_eq!(gpu.temperature_c, Some(29.0));
        assert_eq!(gpu.power_w, Some(76.432));
        assert_eq!(gpu.utilization_pct, 0.0);
        assert_eq!(node_bandwidth_gbps(&[gpu], "AMD EPYC 9654 + NVIDIA H200"), 4814.304);
    }

    /// A consumer card where power and temperature are `NotSupported` and the bus queries fail:
    /// the GPU stays, with those fields empty and bandwidth from the name table.
    #[test]
    fn failed_fields_keep_the_gpu() {
        let reading = GpuReading {
            index: 1,
            name: Some("NVIDIA GeForce RTX 4090".into()),
            vram: Some(VramReading {
                total_bytes: 25_757_220_864,
                used_bytes: 1_000_000_000,
                free_bytes: 24_757_220_864,
            }),
            utilization_gpu_pct: Some(37),
            ..GpuReading::default()
        };
        let gpu = gpu_from_reading(&reading).unwrap();
        assert_eq!(gpu.index, 1);
        assert_eq!(gpu.temperature_c, None);
        assert_eq!(gpu.power_w, None);
        assert_eq!(gpu.utilization_pct, 37.0);
        assert_eq!(gpu.memory_bandwidth_gbps, 1008.0);
        // From the bus when NVML has it: 384 bits at 10 501 MHz.
        let measured = GpuReading { memory_bus_width_bits: Some(384), max_memory_clock_mhz: Some(10_501), ..reading };
        assert!((gpu_from_reading(&measured).unwrap().memory_bandwidth_gbps - 1008.096).abs() < 1e-9);
    }

    #[test]
    fn unified_memory_gpu_is_left_to_system_ram() {
        let gb10 = GpuReading { name: Some("NVIDIA GB10".into()), temperature_c: Some(45), ..GpuReading::default() };
        assert_eq!(gpu_from_reading(&gb10), None);
        // Its name still gives the node a bandwidth through the chip string.
        assert_eq!(node_bandwidth_gbps(&[], "ARM Cortex-X925 + NVIDIA GB10"), 273.0);
    }

    #[test]
    fn nameless_unknown_gpu() {
        let r = GpuReading { vram: Some(VramReading::default()), ..GpuReading::default() };
        let gpu = gpu_from_reading(&r).unwrap();
        assert_eq!((gpu.name.as_str(), gpu.memory_bandwidth_gbps), ("", 0.0));
        assert_eq!(bandwidth_from_bus_gbps(Some(0), Some(3201)), None);
        assert_eq!(bandwidth_from_bus_gbps(Some(6016), None), None);
        assert_eq!(node_bandwidth_gbps(&[gpu], "Intel(R) Xeon(R) Gold 6338"), 0.0);
    }

    /// The largest GPU sets the node's figure.
    #[test]
    fn node_bandwidth_is_the_fastest_gpu() {
        let a = Gpu { memory_bandwidth_gbps: 864.0, ..Gpu::default() };
        let b = Gpu { memory_bandwidth_gbps: 3350.0, ..Gpu::default() };
        assert_eq!(node_bandwidth_gbps(&[a, b], ""), 3350.0);
        assert_eq!(node_bandwidth_gbps(&[], "Apple M2 Ultra"), 800.0);
    }
}
