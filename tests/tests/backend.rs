//! The suite runs on the backend the target is supposed to use.

/// `cargo xtask test-all-targets` sets GREENLET_EXPECT_BACKEND to the backend each target
/// row is meant to exercise; a build that silently fell back to another backend fails here.
#[test]
fn runs_on_the_expected_backend() {
    let name = greenlet::backend_name();
    assert!(!name.is_empty());
    if let Ok(expected) = std::env::var("GREENLET_EXPECT_BACKEND") {
        assert_eq!(
            name, expected,
            "built with backend {name}, expected {expected}"
        );
    }
}
