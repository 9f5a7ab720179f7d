//! The C enums (`greenlet_status_t`, `greenlet_state_t`, `greenlet_event_t`) and how core
//! errors map to status codes.
//!
//! Each enum is declared with [`c_enum!`], which also records the C name of the type and of
//! every constant, so the header check can compare them with `include/greenlet.h`.

use greenlet_core::{Error, TraceEvent};

/// Declares a `#[repr(C)]` enum together with its C names.
macro_rules! c_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $c_type:literal {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident = $value:expr => $c_name:literal,
            )*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                $(#[$variant_meta])*
                $variant = $value,
            )*
        }

        impl $name {
            /// The name of this type in `greenlet.h`.
            pub const C_TYPE: &'static str = $c_type;
            /// Every constant's name in `greenlet.h` and its value, in declaration order.
            pub const C_CONSTANTS: &'static [(&'static str, i32)] = &[$(($c_name, $value)),*];

            /// The name of this constant in `greenlet.h`.
            pub fn c_name(self) -> &'static str {
                match self {
                    $(Self::$variant => $c_name,)*
                }
            }

            /// The constant with this value, if any.
            pub fn from_i32(value: i32) -> Option<Self> {
                match value {
                    $(v if v == $value => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

c_enum! {
    /// What a call returned (`greenlet_status_t`).
    ///
    /// `0` is success. A positive code means the switch happened and what came back is not a
    /// plain value: the error (or panic) is now the caller's *pending error*. A negative code
    /// means the call was refused and nothing happened (except
    /// [`ErrNoStack`](Status::ErrNoStack), which can also arrive from a child that could
    /// not start its parent).
    pub enum Status as "greenlet_status_t" {
        /// Success.
        Ok = 0 => "GREENLET_OK",
        /// A GreenletExit was thrown at the caller: it is being killed and should return
        /// promptly (`return greenlet_propagate();`).
        Exit = 1 => "GREENLET_EXIT",
        /// An error was thrown at the caller, or a child whose parent it is died of one.
        Thrown = 2 => "GREENLET_THROWN",
        /// A Rust panic arrived at the caller.
        Panic = 3 => "GREENLET_PANIC",
        /// The switch happened, but the value that came back is a Rust value of another type
        /// than a C pointer; it was dropped.
        ForeignValue = 4 => "GREENLET_FOREIGN_VALUE",
        /// A required pointer argument was NULL.
        ErrNullArgument = -1 => "GREENLET_ERR_NULL_ARGUMENT",
        /// The handle was released (or never was a handle).
        ErrStaleHandle = -2 => "GREENLET_ERR_STALE_HANDLE",
        /// The greenlet belongs to another thread.
        ErrWrongThread = -3 => "GREENLET_ERR_WRONG_THREAD",
        /// The greenlet belongs to a thread that has exited (or this thread is exiting).
        ErrThreadExited = -4 => "GREENLET_ERR_THREAD_EXITED",
        /// The new parent would make the parent chain a cycle.
        ErrCyclicParent = -5 => "GREENLET_ERR_CYCLIC_PARENT",
        /// A main greenlet has no parent, and none can be set.
        ErrCannotReparentMain = -6 => "GREENLET_ERR_CANNOT_REPARENT_MAIN",
        /// Switching, throwing, killing and reparenting are refused inside a trace hook.
        ErrInTraceHook = -7 => "GREENLET_ERR_IN_TRACE_HOOK",
        /// No stack could be had to start the greenlet; it stays unstarted.
        ErrNoStack = -8 => "GREENLET_ERR_NO_STACK",
    }
}

c_enum! {
    /// The state of a greenlet (`greenlet_state_t`).
    pub enum State as "greenlet_state_t" {
        /// The handle could not be used; `greenlet_last_error()` says why.
        Invalid = -1 => "GREENLET_STATE_INVALID",
        /// Created, never switched to.
        Unstarted = 0 => "GREENLET_STATE_UNSTARTED",
        /// Running now: the thread's current greenlet.
        Running = 1 => "GREENLET_STATE_RUNNING",
        /// Started, switched away from, not finished.
        Suspended = 2 => "GREENLET_STATE_SUSPENDED",
        /// Finished.
        Dead = 3 => "GREENLET_STATE_DEAD",
    }
}

c_enum! {
    /// What a trace hook is told about (`greenlet_event_t`).
    pub enum Event as "greenlet_event_t" {
        /// A value was switched to the target (including a greenlet finishing normally).
        Switch = 0 => "GREENLET_EVENT_SWITCH",
        /// An error was delivered to the target (a throw, or a child dying of an error).
        Throw = 1 => "GREENLET_EVENT_THROW",
    }
}

impl From<greenlet_core::State> for State {
    fn from(state: greenlet_core::State) -> State {
        match state {
            greenlet_core::State::Unstarted => State::Unstarted,
            greenlet_core::State::Running => State::Running,
            greenlet_core::State::Suspended => State::Suspended,
            greenlet_core::State::Dead => State::Dead,
        }
    }
}

impl From<TraceEvent> for Event {
    fn from(event: TraceEvent) -> Event {
        match event {
            TraceEvent::Throw => Event::Throw,
            // `TraceEvent` is non-exhaustive; a future kind is reported as a switch.
            _ => Event::Switch,
        }
    }
}

impl Status {
    /// The code for an error that a core call returned.
    pub fn of_error(error: &Error) -> Status {
        match error {
            Error::Exit(_) => Status::Exit,
            Error::WrongThread => Status::ErrWrongThread,
            Error::ThreadExited => Status::ErrThreadExited,
            Error::CyclicParent => Status::ErrCyclicParent,
            Error::CannotReparentMain => Status::ErrCannotReparentMain,
            Error::NoStack(_) => Status::ErrNoStack,
            // Thrown errors and any error that can only travel between greenlets.
            _ => Status::Thrown,
        }
    }
}

/// A refused or failed call: its status and the message for `greenlet_last_error`.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) status: Status,
    pub(crate) message: String,
}

impl Failed {
    pub(crate) fn new(status: Status, message: impl Into<String>) -> Failed {
        Failed {
            status,
            message: message.into(),
        }
    }

    /// A failure for an error a core call returned before anything switched.
    pub(crate) fn of_error(error: &Error) -> Failed {
        Failed::new(Status::of_error(error), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_round_trip_through_their_values() {
        for &(name, value) in Status::C_CONSTANTS {
            assert_eq!(Status::from_i32(value).map(Status::c_name), Some(name));
        }
        assert_eq!(Status::from_i32(99), None);
        assert_eq!(State::from_i32(-1), Some(State::Invalid));
    }

    #[test]
    fn core_errors_map_to_codes() {
        assert_eq!(
            Status::of_error(&Error::Exit(Default::default())),
            Status::Exit
        );
        assert_eq!(Status::of_error(&Error::msg("x")), Status::Thrown);
        assert_eq!(
            Status::of_error(&Error::CyclicParent),
            Status::ErrCyclicParent
        );
        assert_eq!(
            Status::of_error(&Error::YieldOutsideGenerator),
            Status::Thrown
        );
    }
}
