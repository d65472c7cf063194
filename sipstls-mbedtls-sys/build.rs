//! Builds Mbed TLS 3.6 LTS with sipstls's configuration (`c/sipstls_user_config.h`) into one
//! static library, and generates the bindings against the same configuration.
//!
//! The source is the one `mbedtls-rs-sys` ships (its `DEP_MBEDTLS_INCLUDE` names its
//! `mbedtls/include` folder); nothing is downloaded. Names lose their `mbedtls_`/`MBEDTLS_`
//! prefix in the bindings (`ssl_init`, `ERR_SSL_WANT_READ`); `psa_*` and the shim's
//! `sipstls_mbedtls_*` keep theirs.

use std::env;
use std::path::{Path, PathBuf};

/// The user configuration, as the C macro's value.
const USER_CONFIG: &str = "\"sipstls_user_config.h\"";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let ours = manifest.join("c");
    let root = mbedtls_source();
    let include = root.join("include");
    let library = root.join("library");
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rerun-if-env-changed=DEP_MBEDTLS_INCLUDE");

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&library)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", library.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    sources.push(ours.join("shim.c"));

    cc::Build::new()
        .files(&sources)
        .include(&ours)
        .include(&include)
        .include(&library)
        .define("MBEDTLS_USER_CONFIG_FILE", USER_CONFIG)
        // Optimised in every profile: debug builds of the workspace run thousands of
        // handshakes in their tests.
        .opt_level(2)
        .flag_if_supported("-std=c99")
        .flag_if_supported("-fno-strict-aliasing")
        .warnings(false)
        .compile("sipstls_mbedtls");

    let bindings = bindgen::Builder::default()
        .header(ours.join("wrapper.h").to_string_lossy())
        .clang_arg(format!("-I{}", ours.display()))
        .clang_arg(format!("-I{}", include.display()))
        .clang_arg(format!("-DMBEDTLS_USER_CONFIG_FILE={USER_CONFIG}"))
        .allowlist_function("(mbedtls|psa|sipstls_mbedtls)_.*")
        .allowlist_type("(mbedtls|psa)_.*")
        .allowlist_var("(MBEDTLS|PSA)_.*")
        .derive_default(true)
        .use_core()
        .prepend_enum_name(false)
        .default_macro_constant_type(bindgen::MacroTypeVariation::Signed)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(StripPrefix))
        .generate()
        .expect("bindgen could not read the Mbed TLS headers (is libclang installed?)");
    bindings.write_to_file(out.join("bindings.rs")).expect("cannot write the bindings");

    println!("cargo:include={}:{}", ours.display(), include.display());
}

/// The `mbedtls` source folder (with `include/` and `library/`) of `mbedtls-rs-sys`.
fn mbedtls_source() -> PathBuf {
    let paths = env::var_os("DEP_MBEDTLS_INCLUDE").expect(
        "mbedtls-rs-sys did not report its include folders (DEP_MBEDTLS_INCLUDE): it is the source of Mbed TLS",
    );
    env::split_paths(&paths)
        .filter(|p| p.ends_with("mbedtls/include"))
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .find(|root| root.join("library").join("ssl_tls.c").is_file())
        .unwrap_or_else(|| panic!("no Mbed TLS source among mbedtls-rs-sys's include folders: {paths:?}"))
}

/// Drops the `mbedtls_` and `MBEDTLS_` prefixes where no name collides (bindgen keeps the
/// C names for linking).
#[derive(Debug)]
struct StripPrefix;

impl bindgen::callbacks::ParseCallbacks for StripPrefix {
    fn item_name(&self, item: bindgen::callbacks::ItemInfo<'_>) -> Option<String> {
        let name = item.name;
        let short = name.strip_prefix("mbedtls_").or_else(|| name.strip_prefix("MBEDTLS_"))?;
        // Mbed TLS's own PSA driver types (`mbedtls_psa_hash_operation_t`) and
        // `mbedtls_time_t` would collide with PSA's and libc's names: they keep the prefix.
        let collides = short.starts_with("psa_") || short.starts_with("PSA_") || short == "time_t";
        (!collides).then(|| short.to_owned())
    }

    fn enum_variant_name(
        &self,
        _enum_name: Option<&str>,
        variant: &str,
        _value: bindgen::callbacks::EnumVariantValue,
    ) -> Option<String> {
        variant.strip_prefix("MBEDTLS_").map(str::to_owned)
    }
}
