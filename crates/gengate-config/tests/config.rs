//! Loading configurations as an operator writes them: the README's
//! examples, mistakes named by their key, the environment overlay.

use gengate_config::{Bytes, Config, ConfigError, SECTIONS};

fn load_str(toml_text: &str, env: Vec<(&str, &str)>) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!("gengate-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:x}.toml", toml_text.len() ^ env.len()));
    std::fs::write(&path, toml_text).unwrap();
    let env: Vec<(String, String)> = env.into_iter().map(|(a, b)| (a.into(), b.into())).collect();
    Config::load(Some(&path), &env)
}

#[test]
fn provider_and_model_mistakes_name_the_key() {
    let cases = [
        (
            "[providers.k]\nkind = \"kling\"\naccess_key = \"a\"\n",
            "providers.k.secret_key",
        ),
        (
            "[providers.r]\nkind = \"runninghub\"\n",
            "providers.r.api_key",
        ),
        (
            "[providers.r]\nkind = \"runninghub\"\napi_key = \"x\"\npoll_rate = 0\n",
            "providers.r.poll_rate",
        ),
        (
            "[providers.r]\nkind = \"runninghub\"\napi_key = \"x\"\n[models.m]\nprovider = \"r\"\nkind = \"image\"\nendpoint = \"text2video\"\n",
            "models.m.endpoint",
        ),
        (
            "[providers.r]\nkind = \"runninghub\"\napi_key = \"x\"\n[models.m]\nprovider = \"r\"\nkind = \"image\"\n[models.m.params]\nworkflowId = \"1\"\ntext = \"{{prompt}}\"\n",
            "models.m.params",
        ),
        (
            "[providers.r]\nkind = \"runninghub\"\napi_key = \"x\"\n[providers.s]\nkind = \"sim\"\n[models.m]\nprovider = \"r\"\nkind = \"image\"\nfailover = \"s\"\n",
            "models.m.failover",
        ),
    ];
    for (text, key) in cases {
        let e = load_str(text, vec![]).unwrap_err().to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
    let shown = format!(
        "{:?}",
        load_str(
            "[providers.r]\nkind = \"runninghub\"\napi_key = \"sekrit\"\n",
            vec![]
        )
        .unwrap()
        .providers["r"]
    );
    assert!(!shown.contains("sekrit"), "secrets never print: {shown}");
}

/// The README's TOML examples.
fn readme_toml_blocks() -> Vec<&'static str> {
    include_str!("../../../README.md")
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect()
}

/// The README's example for each real provider is a config that loads.
#[test]
fn readme_provider_examples_load() {
    let blocks = readme_toml_blocks();
    for kind in ["runninghub", "hunyuan", "kling"] {
        let block = blocks
            .iter()
            .find(|b| b.contains(&format!("[providers.{kind}]")))
            .unwrap_or_else(|| panic!("README has no {kind} example"));
        let cfg = load_str(block, vec![])
            .unwrap_or_else(|e| panic!("README's {kind} example does not load: {e}"));
        assert_eq!(cfg.providers[kind].kind.as_str(), kind);
        assert!(cfg.models.values().all(|m| m.provider == kind));
        for spec in cfg.catalog() {
            assert!(spec.params.is_object(), "{kind}: {spec:?}");
        }
    }
}

/// The README's full configuration and its several-servers example load.
#[test]
fn readme_configuration_examples_load() {
    let blocks = readme_toml_blocks();
    for marker in [
        "[limits]",
        "redis_url = \"redis://10.0.0.5:6379\"",
        "ca_file = \"/etc/gengate/ca.pem\"   # PEM",
        "proxy = \"http://10.0.0.2:3128\"   # every request",
        "redis_url = \"rediss://",
    ] {
        let block = blocks
            .iter()
            .find(|b| b.contains(marker))
            .unwrap_or_else(|| panic!("README has no example with {marker}"));
        load_str(block, vec![])
            .unwrap_or_else(|e| panic!("README's example with {marker} does not load: {e}"));
    }
}

#[test]
fn no_file_gives_working_defaults() {
    let cfg = Config::load(None, &Vec::new()).unwrap();
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(cfg.store_url(), "sqlite://./data/gengate.db");
    assert!(cfg.providers.contains_key("sim"));
    assert!(cfg.models.contains_key("sim-image") && cfg.models.contains_key("sim-video"));
}

#[test]
fn env_overrides_file_and_names_keys() {
    let cfg = load_str(
        "[server]\nlisten = \"127.0.0.1:9000\"\n",
        vec![
            ("GENGATE_SERVER__LISTEN", "0.0.0.0:7000"),
            ("GENGATE_SERVER__BODY_LIMIT", "128KiB"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(cfg.server.body_limit, Bytes(128 * 1024));
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let e = load_str("[server]\nlisen = \"x\"\n", vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("server") && e.contains("lisen"), "{e}");
    let e = load_str("[server]\nrequest_timeout = \"soon\"\n", vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.request_timeout"), "{e}");
    let e = load_str("", vec![("GENGATE_DISPATCH__POLL_MAX", "fast")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("dispatch.poll_max"), "{e}");
    let e = load_str(
        "[models.m]\nprovider = \"nope\"\nkind = \"image\"\n",
        vec![],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("models.m.provider"), "{e}");
    let e = load_str("[providers.sim]\nkind = \"sim\"\nconcurrency = 0\n", vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("providers.sim.concurrency"), "{e}");
    let e = load_str("[server\n", vec![]).unwrap_err().to_string();
    assert!(e.contains("not valid TOML"), "{e}");
}

/// Every key `SECTIONS` names is one `Config` takes, so the environment
/// overlay knows every section.
#[test]
fn sections_are_the_configs_top_level_keys() {
    for section in SECTIONS {
        let text = if *section == "providers" {
            "[providers.sim]\nkind = \"sim\"\n".to_owned()
        } else {
            format!("[{section}]\n")
        };
        load_str(&text, vec![]).unwrap_or_else(|e| panic!("[{section}]: {e}"));
    }
    let e = load_str("[nosuch]\n", vec![]).unwrap_err().to_string();
    assert!(e.contains("nosuch"), "{e}");
}

/// A `GENGATE_` variable with no `__` that names no section belongs to
/// something else: ignored with a warning, while one that names a key that
/// does not exist is still refused.
#[test]
fn a_stray_gengate_variable_is_ignored_with_a_warning() {
    let cfg = load_str(
        "",
        vec![
            ("GENGATE_BIN", "/usr/local/bin/gengate"),
            ("GENGATE_SERVER__LISTEN", "0.0.0.0:7000"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(
        cfg.warnings[0].contains("GENGATE_BIN"),
        "{:?}",
        cfg.warnings
    );
    let e = load_str("", vec![("GENGATE_SERVER__LISEN", "x")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("lisen"), "{e}");
}

/// URLs are checked where they are read, naming the key.
#[test]
fn urls_are_refused_at_load_naming_the_key() {
    for (toml, key) in [
        ("[server]\npublic_url = \"ftp://x\"\n", "server.public_url"),
        (
            "[providers.sim]\nkind = \"sim\"\nbase_url = \"localhost:9000\"\n",
            "providers.sim.base_url",
        ),
        (
            "[providers.sim]\nkind = \"sim\"\nproxy = \"socks5://10.0.0.2:1080\"\n",
            "providers.sim.proxy",
        ),
        (
            "[media]\nbackend = \"s3\"\n[media.s3]\nendpoint = \"http://\"\n",
            "media.s3.endpoint",
        ),
        (
            "[cluster]\nredis_url = \"http://10.0.0.5\"\n",
            "cluster.redis_url",
        ),
    ] {
        let e = load_str(toml, vec![]).unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
}
