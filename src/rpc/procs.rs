//! Procedure numbers of libvirt's REMOTE program (`remote_protocol.x`) that
//! vhostfix looks at or calls itself, in one table with their names and what
//! they are to vhostfix: the proxy and the client share it. A procedure not
//! listed here is relayed unchanged.

use super::frame::PROG_REMOTE;

/// What a procedure is to vhostfix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Its arguments may carry domain or device XML: the proxy inspects it.
    /// CONNECT_OPEN is one too (the proxy's lookups reuse its URI).
    Inspected,
    /// Opens a stream when libvirt answers it with success
    /// (`@readstream`/`@writestream`): data frames with the call's procedure
    /// and serial may come any time later.
    OpensStream,
    /// Both: a tunnelled migration's prepare carries the domain XML and
    /// opens the stream the migration data comes through.
    InspectedStream,
    /// Called by vhostfix's own client (connection setup, audit, lookups).
    Client,
    /// Ends the connection or releases what the client registered: a proxy
    /// that is stopping still lets it through, so the client closes cleanly.
    Releases,
}

/// Declares each procedure's constant, and `entry`, the lookup by number
/// (a `match`, which the compiler turns into a jump table).
macro_rules! table {
    ($($name:ident = $num:literal, $use:ident;)*) => {
        // Every procedure is named here, whether or not code refers to it.
        $(#[allow(dead_code)]
        pub(crate) const $name: i32 = $num;)*
        #[cfg(test)]
        const NUMBERS: &[i32] = &[$($num),*];
        fn entry(procedure: i32) -> Option<(&'static str, Use)> {
            match procedure {
                $($num => Some((stringify!($name), Use::$use)),)*
                _ => None,
            }
        }
    };
}

table! {
    CONNECT_OPEN = 1, Inspected;
    CONNECT_CLOSE = 2, Releases;
    DOMAIN_ATTACH_DEVICE = 8, Inspected;
    DOMAIN_CREATE_XML = 10, Inspected;
    DOMAIN_DEFINE_XML = 11, Inspected;
    DOMAIN_GET_XML_DESC = 14, Client;
    AUTH_LIST = 66, Client;
    AUTH_SASL_INIT = 67, Client;
    AUTH_SASL_START = 68, Client;
    AUTH_SASL_STEP = 69, Client;
    CONNECT_DOMAIN_EVENT_DEREGISTER = 106, Releases;
    DOMAIN_MIGRATE_PREPARE2 = 108, Inspected;
    DOMAIN_MIGRATE_PREPARE_TUNNEL = 148, InspectedStream;
    CONNECT_GET_LIB_VERSION = 157, Client;
    DOMAIN_ATTACH_DEVICE_FLAGS = 160, Inspected;
    CONNECT_DOMAIN_EVENT_DEREGISTER_ANY = 168, Releases;
    DOMAIN_UPDATE_DEVICE_FLAGS = 174, Inspected;
    DOMAIN_SNAPSHOT_CREATE_XML = 185, Inspected;
    DOMAIN_OPEN_CONSOLE = 201, OpensStream;
    STORAGE_VOL_UPLOAD = 208, OpensStream;
    STORAGE_VOL_DOWNLOAD = 209, OpensStream;
    DOMAIN_SCREENSHOT = 211, OpensStream;
    DOMAIN_MIGRATE_BEGIN3 = 213, Inspected;
    DOMAIN_MIGRATE_PREPARE3 = 214, Inspected;
    DOMAIN_MIGRATE_PREPARE_TUNNEL3 = 215, InspectedStream;
    DOMAIN_MIGRATE_PERFORM3 = 216, Inspected;
    DOMAIN_MIGRATE_FINISH3 = 217, Inspected;
    DOMAIN_SAVE_FLAGS = 232, Inspected;
    DOMAIN_RESTORE_FLAGS = 233, Inspected;
    DOMAIN_SAVE_IMAGE_DEFINE_XML = 236, Inspected;
    CONNECT_LIST_ALL_DOMAINS = 273, Client;
    DOMAIN_OPEN_CHANNEL = 296, OpensStream;
    DOMAIN_MIGRATE_BEGIN3_PARAMS = 302, Inspected;
    DOMAIN_MIGRATE_PREPARE3_PARAMS = 303, Inspected;
    DOMAIN_MIGRATE_PREPARE_TUNNEL3_PARAMS = 304, InspectedStream;
    DOMAIN_MIGRATE_PERFORM3_PARAMS = 305, Inspected;
    DOMAIN_MIGRATE_FINISH3_PARAMS = 306, Inspected;
    DOMAIN_CREATE_XML_WITH_FILES = 309, Inspected;
    CONNECT_NETWORK_EVENT_DEREGISTER_ANY = 314, Releases;
    CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY = 317, Releases;
    DOMAIN_DEFINE_XML_FLAGS = 350, Inspected;
    CONNECT_UNREGISTER_CLOSE_CALLBACK = 361, Releases;
    CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY = 369, Releases;
    CONNECT_NODE_DEVICE_EVENT_DEREGISTER_ANY = 375, Releases;
    CONNECT_SECRET_EVENT_DEREGISTER_ANY = 381, Releases;
    DOMAIN_MANAGED_SAVE_DEFINE_XML = 389, Inspected;
    DOMAIN_SAVE_PARAMS = 440, Inspected;
    DOMAIN_RESTORE_PARAMS = 441, Inspected;
}

/// The name of a REMOTE procedure in the table, for logs.
pub(crate) fn proc_name(procedure: i32) -> Option<&'static str> {
    entry(procedure).map(|e| e.0)
}

/// True for a REMOTE call libvirt answers by opening a stream.
pub(crate) fn opens_stream(procedure: i32) -> bool {
    entry(procedure).is_some_and(|e| matches!(e.1, Use::OpensStream | Use::InspectedStream))
}

/// True for a REMOTE call that ends the connection or releases something the
/// client registered (CONNECT_CLOSE, event deregistrations).
pub(crate) fn releases(prog: u32, procedure: i32) -> bool {
    prog == PROG_REMOTE && entry(procedure).is_some_and(|e| e.1 == Use::Releases)
}

/// True for a call the proxy may have to inspect: one that can carry domain
/// or device XML, or CONNECT_OPEN (whose URI the lookups reuse).
pub(crate) fn may_carry_xml(prog: u32, procedure: i32) -> bool {
    prog == PROG_REMOTE
        && entry(procedure).is_some_and(|e| matches!(e.1, Use::Inspected | Use::InspectedStream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_entry_per_number_and_name() {
        let mut nums = NUMBERS.to_vec();
        nums.sort_unstable();
        nums.dedup();
        assert_eq!(nums.len(), NUMBERS.len(), "a number is listed twice");
        assert_eq!(proc_name(350), Some("DOMAIN_DEFINE_XML_FLAGS"));
        assert_eq!(proc_name(3), None);
        assert!(opens_stream(STORAGE_VOL_UPLOAD) && !opens_stream(DOMAIN_DEFINE_XML));
        assert!(may_carry_xml(PROG_REMOTE, CONNECT_OPEN));
        assert!(may_carry_xml(PROG_REMOTE, DOMAIN_MIGRATE_FINISH3));
        assert!(!may_carry_xml(PROG_REMOTE, DOMAIN_GET_XML_DESC));
        assert!(!may_carry_xml(PROG_REMOTE, STORAGE_VOL_UPLOAD));
        assert!(may_carry_xml(PROG_REMOTE, DOMAIN_MIGRATE_PREPARE_TUNNEL3));
        assert!(opens_stream(DOMAIN_MIGRATE_PREPARE_TUNNEL3));
        assert!(!may_carry_xml(0x2000_8087, DOMAIN_DEFINE_XML));
        assert!(releases(PROG_REMOTE, CONNECT_CLOSE));
        assert!(releases(PROG_REMOTE, CONNECT_UNREGISTER_CLOSE_CALLBACK));
        assert!(!releases(PROG_REMOTE, DOMAIN_DEFINE_XML));
        assert!(!releases(0x2000_8087, CONNECT_CLOSE));
    }
}
