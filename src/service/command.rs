//! Commands: the `Command` trait and the `commands!` table that writes it.

use crate::codec::{self, CodecError};
use crate::engine::{Submission, CONTROL_KIND_MIN};
use crate::service::Invalid;
use serde::{Serialize, Serializer};

/// A service's set of commands: an enum whose variants each wrap one command struct with its
/// own wire kind and version. Written by [`commands!`](crate::commands), not by hand.
///
/// The wire form of a command is its variant's struct alone (no enum tag), encoded with keel's
/// codec, under the variant's kind and version (`docs/SERVICES.md`).
pub trait Command: Sized {
    /// The message kind of this command.
    fn kind(&self) -> u16;

    /// The version this build writes this command's kind with.
    fn version(&self) -> u16;

    /// Decodes a message of any supported kind and version, upcasting older versions.
    /// A variant struct without heap fields decodes without allocating.
    fn decode(kind: u16, version: u16, payload: &[u8]) -> Result<Self, Invalid>;

    /// Serializes the variant's struct: the payload, without the enum's tag.
    fn serialize_payload<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;

    /// Encodes the payload into `buf`; returns its length. Does not allocate.
    fn encode_into(&self, buf: &mut [u8]) -> Result<usize, CodecError> {
        codec::encode_into(&Payload(self), buf)
    }

    /// Kind and version for submitting this command (session 0, correlation 0).
    fn submission(&self) -> Submission {
        Submission {
            kind: self.kind(),
            version: self.version(),
            ..Submission::default()
        }
    }

    /// Checks that a message decodes as one of these commands: a validator for
    /// `keel::net::Server::start` (`Server::start(net, &mut engine, MyCommand::validate)`).
    fn validate(kind: u16, version: u16, payload: &[u8]) -> Result<(), Invalid> {
        Self::decode(kind, version, payload).map(drop)
    }
}

/// A command seen as its payload, for the codec.
pub(crate) struct Payload<'a, C>(pub(crate) &'a C);

impl<C: Command> Serialize for Payload<'_, C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
}

/// Compile-time check of a `commands!` table: `rows` holds `(kind, current version, old
/// versions)`. Panics (a compile error, in the macro's `const` block) on a repeated kind, a
/// kind the engine reserves, a version 0 or an old version equal to the current one.
#[doc(hidden)]
pub const fn __check_table(rows: &[(u16, u16, &[u16])]) {
    let mut i = 0;
    while i < rows.len() {
        let (kind, version, old) = rows[i];
        assert!(
            kind < CONTROL_KIND_MIN,
            "kinds from 0xFF00 are the engine's own"
        );
        assert!(version >= 1, "versions start at 1");
        let mut j = 0;
        while j < old.len() {
            assert!(old[j] >= 1, "versions start at 1");
            assert!(old[j] != version, "an old version repeats the current one");
            let mut k = j + 1;
            while k < old.len() {
                assert!(old[j] != old[k], "an old version is listed twice");
                k += 1;
            }
            j += 1;
        }
        let mut k = i + 1;
        while k < rows.len() {
            assert!(rows[k].0 != kind, "a kind is listed twice");
            k += 1;
        }
        i += 1;
    }
}

/// Declares a service's commands once: each variant's wire kind, its current version, and the
/// older versions still accepted (each decoded as its own struct and upcast with `Into`).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use keel::Command;
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// pub struct Open { pub account: u64 }
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// pub struct Deposit { pub account: u64, pub amount: u64 }
/// /// What version 1 of `Deposit` carried: amounts in whole units.
/// #[derive(Serialize, Deserialize)]
/// pub struct DepositV1 { pub account: u64, pub units: u32 }
///
/// impl From<DepositV1> for Deposit {
///     fn from(v1: DepositV1) -> Self {
///         Deposit { account: v1.account, amount: u64::from(v1.units) * 100 }
///     }
/// }
///
/// keel::commands! {
///     /// Everything a client can ask of the ledger.
///     #[derive(Debug, PartialEq)]
///     pub enum LedgerCommand {
///         1 => Open(Open),
///         2 => Deposit(Deposit) version 2 { 1 => DepositV1 },
///     }
/// }
///
/// let deposit = LedgerCommand::Deposit(Deposit { account: 7, amount: 500 });
/// assert_eq!((deposit.kind(), deposit.version()), (2, 2));
/// let mut buf = [0u8; 64];
/// let n = deposit.encode_into(&mut buf).unwrap();
/// assert_eq!(LedgerCommand::decode(2, 2, &buf[..n]), Ok(deposit));
///
/// // A version-1 payload from an old journal decodes as the current command.
/// let v1 = keel::codec::encode_into(&DepositV1 { account: 7, units: 5 }, &mut buf).unwrap();
/// let upcast = LedgerCommand::decode(2, 1, &buf[..v1]).unwrap();
/// assert_eq!(upcast, LedgerCommand::Deposit(Deposit { account: 7, amount: 500 }));
/// assert!(LedgerCommand::validate(3, 1, &[]).is_err()); // unknown kind
/// ```
///
/// Each row is `KIND => Variant(Struct)`, then optionally `version N` (default 1) and
/// `{ OLD => OldStruct, ... }`. A table that repeats a kind, uses a kind from `0xFF00`, a
/// version 0, or lists the current version as old does not compile. Attributes (docs,
/// derives) on the enum and its variants are kept.
///
/// ```compile_fail
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct Open;
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct Close;
/// keel::commands! {
///     pub enum Mistake {
///         1 => Open(Open),
///         1 => Close(Close), // error: a kind is listed twice
///     }
/// }
/// ```
#[macro_export]
macro_rules! commands {
    (@version) => { 1 };
    (@version $version:literal) => { $version };
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_attr:meta])*
                $kind:literal => $variant:ident($ty:ty)
                $( version $version:literal $( { $( $old:literal => $old_ty:ty ),+ $(,)? } )? )?
            ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        $vis enum $name {
            $( $(#[$variant_attr])* $variant($ty), )+
        }

        const _: () = $crate::service::__check_table(&[
            $( ($kind, $crate::commands!(@version $($version)?), &[ $( $( $( $old, )+ )? )? ]), )+
        ]);

        impl $crate::Command for $name {
            fn kind(&self) -> u16 {
                match self { $( Self::$variant(_) => $kind, )+ }
            }

            fn version(&self) -> u16 {
                match self { $( Self::$variant(_) => $crate::commands!(@version $($version)?), )+ }
            }

            #[inline]
            fn decode(
                kind: u16,
                version: u16,
                payload: &[u8],
            ) -> ::core::result::Result<Self, $crate::service::Invalid> {
                match kind {
                    $( $kind => {
                        if version == $crate::commands!(@version $($version)?) {
                            return $crate::codec::decode::<$ty>(payload)
                                .map(Self::$variant)
                                .map_err(|_| $crate::service::Invalid::Undecodable);
                        }
                        $( $( $(
                            if version == $old {
                                return $crate::codec::decode::<$old_ty>(payload)
                                    .map(|old| Self::$variant(::core::convert::Into::into(old)))
                                    .map_err(|_| $crate::service::Invalid::Undecodable);
                            }
                        )+ )? )?
                        ::core::result::Result::Err($crate::service::Invalid::UnsupportedVersion)
                    } )+
                    _ => ::core::result::Result::Err($crate::service::Invalid::UnknownKind),
                }
            }

            fn serialize_payload<__S: $crate::service::__Serializer>(
                &self,
                serializer: __S,
            ) -> ::core::result::Result<__S::Ok, __S::Error> {
                match self {
                    $( Self::$variant(command) => {
                        $crate::service::__Serialize::serialize(command, serializer)
                    } )+
                }
            }
        }
    };
}
