//! Golden files: each case is `tests/files/NAME.xml` with the expected corrected
//! output `NAME.out.xml` (absent when the output must equal the input byte for
//! byte), the expected `check` report `NAME.report`, or for bad input the
//! expected error text `NAME.err`. One line per case below; the cases are listed
//! in tests/files/README.md. `VHOSTFIX_BLESS=1 cargo test --test golden` rewrites
//! the expected files (review the diff before committing).

use std::path::PathBuf;
use vhostfix::{
    analyze, decode, findings, report, unchecked, Detection, Guests, InputLimits, Policy,
    TargetModel, Verdict,
};

fn file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/files")
        .join(name)
}

fn bless() -> bool {
    std::env::var_os("VHOSTFIX_BLESS").is_some()
}

fn expect_file(name: &str, actual: &str) {
    let path = file(name);
    if bless() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with VHOSTFIX_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

fn run_case(name: &str, policy: Policy) {
    let bytes = std::fs::read(file(&format!("{name}.xml"))).unwrap();
    let text = decode(&bytes, &policy.limits).unwrap();
    let a = analyze(text, &policy).unwrap_or_else(|e| panic!("{name}: {e}"));
    let out = a.output(text);
    let out_name = format!("{name}.out.xml");
    if a.changes() {
        expect_file(&out_name, &out);
    } else {
        assert_eq!(
            out, text,
            "{name}: nothing to change, so the output must equal the input"
        );
        assert!(
            !file(&out_name).exists(),
            "{out_name} exists but nothing changes"
        );
    }
    expect_file(
        &format!("{name}.report"),
        &report::text(
            &format!("{name}.xml"),
            &a,
            &findings(&a, &policy, &unchecked),
        ),
    );
    // A second pass changes nothing.
    let again = analyze(&out, &policy).unwrap();
    assert!(
        again.edits.is_empty(),
        "{name}: second pass wants to change {:?}",
        again.edits
    );
}

fn run_bad(name: &str, policy: Policy) {
    let bytes = std::fs::read(file(&format!("{name}.xml"))).unwrap();
    let err = decode(&bytes, &policy.limits)
        .and_then(|text| analyze(text, &policy).map(|_| ()))
        .expect_err("bad input must be refused");
    expect_file(&format!("{name}.err"), &format!("{err}\n"));
}

macro_rules! case {
    ($name:ident) => {
        case!($name, Policy::default());
    };
    ($name:ident, $policy:expr) => {
        #[test]
        fn $name() {
            run_case(stringify!($name), $policy)
        }
    };
}

macro_rules! bad {
    ($name:ident) => {
        bad!($name, Policy::default());
    };
    ($name:ident, $policy:expr) => {
        #[test]
        fn $name() {
            run_bad(stringify!($name), $policy)
        }
    };
}

fn with(f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::default();
    f(&mut p);
    p
}

// Stack shapes.
case!(zstack_windows);
case!(zstack_localtime_only);
case!(nova_os_type_windows);
case!(nova_no_os_type);
case!(nova_os_type_linux);
case!(cloudstack_description);
case!(kubevirt_passt);
case!(virtinstall_no_model);
case!(ovirt_hyperv);
// Not Windows, or nothing to do.
case!(linux_rhel_libosinfo);
case!(linux_no_evidence);
case!(msdos_libosinfo);
case!(already_virtio);
case!(no_vhostuser);
case!(override_other);
// Shapes of the XML itself.
case!(crlf_missing_model);
case!(several_nics);
case!(double_quotes_long_form);
case!(comments_cdata);
case!(prefixed_override);
case!(model_without_type);
case!(vhostuser_self_closing);
case!(memory_not_shared);
case!(bom);
// Device XML and policy knobs.
case!(device_interface);
case!(
    device_interface_windows,
    with(|p| p.guest_os = Some(Detection::given(Verdict::Windows, "--guest-os windows")))
);
case!(guests_any, with(|p| p.guests = Guests::Any));
case!(
    target_non_transitional,
    with(|p| p.target_model = TargetModel::VirtioNonTransitional)
);

// Bad input: the exact error text is pinned.
bad!(bad_mismatched_tag);
bad!(bad_truncated);
bad!(bad_not_utf8);
bad!(bad_empty);
bad!(bad_entity_bomb);
bad!(bad_too_deep);
bad!(bad_root);
bad!(bad_override_value);
bad!(bad_latin1_declaration);
bad!(
    bad_too_large,
    with(|p| p.limits = InputLimits {
        max_input_bytes: 1024,
        ..InputLimits::default()
    })
);
