//! Builds the HailoRT shim (src/backends/hailo/shim.cpp) when a Hailo feature is on:
//!
//! * `hailo`: against the installed HailoRT. Headers from `HAILORT_INCLUDE_DIR` (the
//!   directory holding `hailo/hailort.hpp`), `libhailort.so` from `HAILORT_LIB_DIR`; each
//!   falls back to the compiler's and linker's standard paths (/usr/include, /usr/lib),
//!   where HailoRT's packages install. HailoRT ships a CMake config, not a pkg-config file,
//!   so there is nothing to query.
//! * `hailo-fake`: against the HailoRT test double in tests/hailo_fake/, compiled in. For
//!   tests only: a binary built this way drives no accelerator.
//!
//! Without either feature there is nothing to build.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(all(feature = "hailo", feature = "hailo-fake"))]
    compile_error!("features `hailo` and `hailo-fake` exclude each other: pick the real HailoRT or its test double");
    #[cfg(any(feature = "hailo", feature = "hailo-fake"))]
    shim::build();
}

#[cfg(any(feature = "hailo", feature = "hailo-fake"))]
mod shim {
    const SHIM: &str = "src/backends/hailo/shim.cpp";

    fn compiler() -> cc::Build {
        println!("cargo:rerun-if-changed={SHIM}");
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .std("c++17")
            .warnings(true)
            .extra_warnings(true)
            .file(SHIM);
        build
    }

    #[cfg(feature = "hailo")]
    pub fn build() {
        println!("cargo:rerun-if-env-changed=HAILORT_INCLUDE_DIR");
        println!("cargo:rerun-if-env-changed=HAILORT_LIB_DIR");
        let mut build = compiler();
        if let Some(dir) = std::env::var_os("HAILORT_INCLUDE_DIR") {
            // As a system directory: HailoRT's own headers are not ours to warn about.
            build.flag("-isystem").flag(dir.to_string_lossy().as_ref());
        }
        build.compile("hailo_clip_shim");
        if let Some(dir) = std::env::var_os("HAILORT_LIB_DIR") {
            println!("cargo:rustc-link-search=native={}", dir.to_string_lossy());
        }
        println!("cargo:rustc-link-lib=dylib=hailort");
    }

    #[cfg(all(feature = "hailo-fake", not(feature = "hailo")))]
    pub fn build() {
        const FAKE: &str = "tests/hailo_fake";
        println!("cargo:rerun-if-changed={FAKE}");
        let mut build = compiler();
        build
            .include(format!("{FAKE}/include"))
            .file(format!("{FAKE}/fake_hailort.cpp"));
        build.compile("hailo_clip_shim");
    }
}
