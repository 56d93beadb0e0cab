//! Looking models up by name.

use std::collections::BTreeMap;

use simulation::models::{ExecCommand, ModelError, Registry, RegistryConfig};

#[test]
fn unknown_model_lists_the_known_ones() {
    let config = RegistryConfig {
        exec: BTreeMap::from([(
            "fit".to_owned(),
            ExecCommand {
                program: "/bin/cat".into(),
                args: vec![],
                timeout: None,
            },
        )]),
    };
    let registry = Registry::new(config).unwrap();
    assert_eq!(registry.names().collect::<Vec<_>>(), ["fit", "sir", "spin"]);

    let error = registry.get("sri").err().unwrap();
    assert_eq!(error.error_name(), "Model.UnknownModel");
    assert!(!error.is_retryable());
    assert_eq!(
        error.to_string(),
        "unknown model `sri`; known models: fit, sir, spin"
    );
    assert!(matches!(error, ModelError::UnknownModel { .. }));
}

#[test]
fn models_answer_to_their_names() {
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    for name in ["sir", "spin"] {
        assert_eq!(registry.get(name).unwrap().name(), name);
    }
}
