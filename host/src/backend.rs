//! Which Burn backend the host computes on. The pure-Rust CPU backend (`flex`) is the default;
//! GPU backends are cargo features (`wgpu`, `vulkan`, `cuda`) chosen at run time with
//! `--backend` (or [`select`]). Every stage asks [`compute_device`] / [`train_device`], so one
//! choice moves training, evaluation and benchmarks together.

use std::sync::OnceLock;

use burn::tensor::Device;

use crate::error::Error;

pub mod conv;
pub mod tanh;

/// A compute backend this crate knows; [`Backend::compiled`] says whether this build has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (feature `flex`, on by default).
    Flex,
    /// Burn's older ndarray CPU backend (feature `ndarray`; deprecated upstream).
    Ndarray,
    /// The default wgpu adapter: Vulkan, Metal or DX12, whichever the machine offers (feature
    /// `wgpu`).
    Wgpu,
    /// wgpu pinned to Vulkan, SPIR-V kernels (feature `vulkan`); Mesa's lavapipe counts.
    Vulkan,
    /// CUDA device 0 (feature `cuda`).
    Cuda,
}

impl Backend {
    /// Whether this build includes the backend.
    pub fn compiled(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Vulkan => cfg!(feature = "vulkan"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Lower-case name, as `--backend` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Vulkan => "vulkan",
            Backend::Cuda => "cuda",
        }
    }

    /// The CPU default: `flex` where compiled, else `ndarray`.
    pub fn default_cpu() -> Backend {
        if cfg!(feature = "flex") {
            Backend::Flex
        } else {
            Backend::Ndarray
        }
    }

    fn device(self) -> Device {
        match self {
            #[cfg(feature = "flex")]
            Backend::Flex => Device::flex(),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // ndarray is kept as an alternative backend on purpose
            Backend::Ndarray => Device::ndarray(),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(feature = "vulkan")]
            Backend::Vulkan => Device::vulkan(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Device::cuda(0),
            #[allow(unreachable_patterns)] // [`select`] admits compiled backends only
            _ => Backend::default_cpu().device(),
        }
    }
}

static SELECTED: OnceLock<Backend> = OnceLock::new();

/// Chooses the backend for the rest of the process (before the first tensor). Errors if this
/// build lacks it, or if another backend was already chosen.
pub fn select(b: Backend) -> Result<(), Error> {
    if !b.compiled() {
        return Err(Error::Invalid(format!(
            "this build has no `{0}` backend: rebuild with `cargo build --release --features {0}`",
            b.name()
        )));
    }
    let chosen = *SELECTED.get_or_init(|| b);
    if chosen != b {
        return Err(Error::Invalid(format!(
            "backend already set to `{}`",
            chosen.name()
        )));
    }
    Ok(())
}

/// The backend in use: the one [`select`]ed, else [`Backend::default_cpu`].
pub fn selected() -> Backend {
    *SELECTED.get_or_init(Backend::default_cpu)
}

/// The device this process computes on, without autodiff.
pub fn compute_device() -> Device {
    #[cfg(not(any(feature = "flex", feature = "ndarray")))]
    compile_error!("enable the `flex` or the `ndarray` feature of edgevae (a CPU backend)");
    selected().device()
}

/// [`compute_device`] with autodiff, for training.
pub fn train_device() -> Device {
    compute_device().autodiff()
}

/// `n` autodiff devices of the selected backend for data-parallel training (`train --devices
/// N`): discrete GPUs `0..n` for wgpu and Vulkan, CUDA devices `0..n`. The CPU backends have one
/// device, which every shard then shares: the result is one device's up to float rounding
/// (what the tests check), and it is no faster. An error for `n = 0`.
pub fn train_devices(n: usize) -> Result<Vec<Device>, Error> {
    if n == 0 {
        return Err(Error::Invalid("--devices must be at least 1".into()));
    }
    if n == 1 {
        return Ok(vec![train_device()]);
    }
    let one = |i: usize| -> Device {
        match selected() {
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i)),
            #[cfg(feature = "vulkan")]
            Backend::Vulkan => Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(i)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Device::cuda(i),
            other => {
                let _ = i;
                other.device()
            }
        }
    };
    Ok((0..n).map(|i| one(i).autodiff()).collect())
}
