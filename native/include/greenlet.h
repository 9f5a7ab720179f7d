/*
 * greenlet.h - greenlets for C and C++: stackful coroutines with the semantics of
 * Python's greenlet, from greenlet-rs (libgreenlet).
 *
 *     cc app.c $(pkg-config --cflags --libs greenlet)
 *
 * This header is written by hand. A test of the Rust crate (native/src/abi_check.rs) parses
 * it and fails when a declaration differs from the Rust side, so it cannot drift.
 *
 * THE MODEL
 *   A greenlet is a function running on its own stack. One greenlet runs at a time in each
 *   thread; the thread's own stack is its main greenlet. greenlet_switch(g, v, &r)
 *   suspends the caller and resumes g, handing it v; it returns when some greenlet
 *   switches back, with what that one sent in r. The first switch into a greenlet calls
 *   its entry function with the value as `arg`. When the entry returns, its result goes to
 *   the greenlet's parent (by default the greenlet that created it), as the result of the
 *   parent's pending switch; if the parent is dead, to the nearest live ancestor; if it is
 *   unstarted, the parent starts with the result as its `arg`. Switching to (or throwing
 *   into) a dead greenlet likewise goes to its nearest live ancestor: that is not an error.
 *
 * HANDLES AND OWNERSHIP
 *   - A greenlet_t * is a counted reference. greenlet_new, greenlet_current, greenlet_main
 *     and greenlet_parent each return a new reference, which the caller must release with
 *     greenlet_release exactly once; greenlet_retain adds one. Handles passed to a trace
 *     hook are borrowed: valid during the call, not to be released (retain to keep one).
 *   - A greenlet has one handle at a time: two handles for the same greenlet are the same
 *     pointer, so `greenlet_current() == g` works (and adds a reference to release).
 *   - Releasing the last reference of a suspended greenlet that nothing else holds kills
 *     it: its pending switch returns GREENLET_EXIT and it should return. A greenlet that
 *     holds a reference to itself keeps itself alive.
 *   - A handle still held when its thread exits is orphaned: its greenlet is freed (a
 *     suspended one is killed if the thread's state still allows it), and later use
 *     returns GREENLET_ERR_THREAD_EXITED. Release handles before a thread ends.
 *   - The library never frees `user_data`, values, or error payloads: they are the
 *     caller's. A greenlet that is killed or thrown into before it starts never calls its
 *     entry, so free `user_data` elsewhere if it owns memory.
 *
 * THREADS
 *   A greenlet belongs to the thread that created it. Every function checks the owner
 *   before touching the greenlet: a handle used (switched to, queried, retained, even
 *   released) from another thread returns GREENLET_ERR_WRONG_THREAD and changes nothing.
 *   Different threads may call the library at the same time on their own greenlets.
 *
 * STALE HANDLES (what is guaranteed)
 *   Handle memory is never returned to the allocator: a released handle goes to a pool,
 *   and is reused only after more than GREENLET_QUARANTINE other handles have been released
 *   (process-wide). Until then any use of it returns GREENLET_ERR_STALE_HANDLE. After reuse,
 *   the old pointer names the new greenlet, like a reused file descriptor. Either way no
 *   call ever reads freed memory. Pointers that never came from this library (garbage,
 *   freed memory of your own) are undefined behaviour, as in any C API.
 *
 * ERRORS
 *   Functions return a greenlet_status_t: 0 is success; a positive code means the switch
 *   happened and something other than a plain value came back (an exit request, a thrown
 *   error, a Rust panic, a Rust value); a negative code means the call was refused and did
 *   nothing. greenlet_last_error() describes the last non-OK status of the thread.
 *
 *   When a switch returns GREENLET_EXIT, GREENLET_THROWN or GREENLET_PANIC, the error
 *   becomes the calling greenlet's *pending error*: greenlet_error_payload() and
 *   greenlet_error_message() describe it, until a newer one replaces it. A greenlet may
 *   handle it and go on, or die of it: `return greenlet_propagate();` (the C form of Rust's
 *   `?`). A killed greenlet that propagates its GREENLET_EXIT dies quietly: its parent's
 *   switch gets GREENLET_OK and NULL. An entry can also die of an error of its own:
 *   `return greenlet_fail(payload, "message");` - the parent then gets GREENLET_THROWN with
 *   that payload. Whatever an entry returns after calling one of the two is ignored.
 *
 * C++
 *   C++ exceptions may be thrown and caught inside a greenlet, across any number of
 *   switches. One that escapes an entry function or a trace hook ends the process (abort),
 *   as in Python's greenlet. (Entries and hooks are called with Rust's "C-unwind" ABI, so
 *   this is defined behaviour; Rust allows a platform to deliver the exception to the
 *   parent's switch as GREENLET_PANIC instead, which none of the tested ones does.)
 *
 * TRACE HOOKS
 *   greenlet_settrace installs a per-thread hook, called after every switch in the greenlet
 *   switched to, with tracing off while it runs. Inside it, greenlet_switch, greenlet_throw,
 *   greenlet_kill and greenlet_set_parent return GREENLET_ERR_IN_TRACE_HOOK; a greenlet
 *   released inside it is only freed (and maybe killed) after it returns.
 *
 * STRINGS
 *   greenlet_last_error(): valid until the next call into the library on that thread.
 *   greenlet_error_message(): valid while that error stays pending in the calling greenlet.
 *   greenlet_status_name(), greenlet_backend_name(): static.
 */
#ifndef GREENLET_H
#define GREENLET_H

#include <stddef.h>

#define GREENLET_VERSION_MAJOR 0
#define GREENLET_VERSION_MINOR 1
#define GREENLET_VERSION_PATCH 0

/* Released handles a process keeps before reusing one (see STALE HANDLES). */
#define GREENLET_QUARANTINE 1024

#ifdef __cplusplus
extern "C" {
#endif

/* A greenlet handle. Opaque. */
typedef struct greenlet greenlet_t;

/* What a call returned. */
typedef enum greenlet_status {
    /* Success. */
    GREENLET_OK = 0,
    /* A GreenletExit was thrown at the caller: it is being killed and should return
     * promptly (`return greenlet_propagate();`). */
    GREENLET_EXIT = 1,
    /* An error was thrown at the caller (greenlet_throw), or a child whose parent it is
     * died of one (greenlet_fail, or a Rust error). See greenlet_error_payload(). */
    GREENLET_THROWN = 2,
    /* A Rust panic arrived at the caller (from a Rust greenlet). Propagate it, or it is
     * dropped. */
    GREENLET_PANIC = 3,
    /* The switch happened, but what came back is a Rust value of another type than a C
     * pointer; it was dropped, and *result is NULL. */
    GREENLET_FOREIGN_VALUE = 4,
    /* A required pointer argument was NULL. */
    GREENLET_ERR_NULL_ARGUMENT = -1,
    /* The handle was released (or is not a live handle). */
    GREENLET_ERR_STALE_HANDLE = -2,
    /* The greenlet belongs to another thread. */
    GREENLET_ERR_WRONG_THREAD = -3,
    /* The greenlet belongs to a thread that has exited (or this thread is exiting). */
    GREENLET_ERR_THREAD_EXITED = -4,
    /* The new parent would make the parent chain a cycle. */
    GREENLET_ERR_CYCLIC_PARENT = -5,
    /* A main greenlet has no parent, and none can be set. */
    GREENLET_ERR_CANNOT_REPARENT_MAIN = -6,
    /* greenlet_switch, _throw, _kill and _set_parent are refused inside a trace hook. */
    GREENLET_ERR_IN_TRACE_HOOK = -7,
    /* No stack could be had to start the greenlet; it stays unstarted. */
    GREENLET_ERR_NO_STACK = -8
} greenlet_status_t;

/* The state of a greenlet. */
typedef enum greenlet_state {
    /* The handle could not be used; greenlet_last_error() says why. */
    GREENLET_STATE_INVALID = -1,
    /* Created, never switched to. */
    GREENLET_STATE_UNSTARTED = 0,
    /* Running now: the thread's current greenlet. */
    GREENLET_STATE_RUNNING = 1,
    /* Started, switched away from, not finished. */
    GREENLET_STATE_SUSPENDED = 2,
    /* Finished (its stack is released). */
    GREENLET_STATE_DEAD = 3
} greenlet_state_t;

/* What a trace hook is told about. */
typedef enum greenlet_event {
    /* A value was switched to the target (including a greenlet finishing normally). */
    GREENLET_EVENT_SWITCH = 0,
    /* An error was delivered to the target (a throw, or a child dying of an error). */
    GREENLET_EVENT_THROW = 1
} greenlet_event_t;

/* The entry function of a greenlet. `arg` is the value of the first switch into it (NULL
 * when it was started by a Rust unit value); `user_data` is what greenlet_new was given.
 * What it returns goes to its parent. */
typedef void *(*greenlet_entry_fn)(void *arg, void *user_data);

/* A trace hook. `origin` and `target` are borrowed handles, valid during the call. */
typedef void (*greenlet_trace_fn)(greenlet_event_t event, greenlet_t *origin,
                                  greenlet_t *target, void *user_data);

/* --- Creating and switching ----------------------------------------------------------- */

/* Creates a greenlet that calls entry(arg, user_data) when first switched to. `parent`
 * NULL means the current greenlet; `stack_size` 0 means the default (rounded up to the
 * stack pool's sizes). Nothing runs and no stack is taken until the first switch.
 * On success *out is a new handle; on failure NULL.
 * Errors: GREENLET_ERR_NULL_ARGUMENT (out or entry), handle errors of `parent`. */
greenlet_status_t greenlet_new(greenlet_t **out, greenlet_entry_fn entry, void *user_data,
                               greenlet_t *parent, size_t stack_size);

/* As greenlet_new, for a greenlet with a floating-point control state of its own (rounding
 * mode, exception masks, flush-to-zero), starting as the caller's is now: what it changes
 * (fesetround, ...) stays in it, and what other greenlets change does not reach it. Other
 * greenlets share their thread's state. Once a thread has made one, each of its switches
 * reads and compares the state (a few nanoseconds). */
greenlet_status_t greenlet_new_own_fp(greenlet_t **out, greenlet_entry_fn entry,
                                      void *user_data, greenlet_t *parent, size_t stack_size);

/* Switches to `g` handing it `value`; returns when something comes back, with the value in
 * *result (if result is not NULL; NULL on any status but GREENLET_OK).
 * If g is unstarted it starts with `value` as its arg; if dead, the value goes to its
 * nearest live ancestor; if g is the caller, `value` comes straight back.
 * Returns GREENLET_OK, GREENLET_EXIT, GREENLET_THROWN, GREENLET_PANIC,
 * GREENLET_FOREIGN_VALUE, or a refusal: handle errors, GREENLET_ERR_IN_TRACE_HOOK,
 * GREENLET_ERR_NO_STACK. */
greenlet_status_t greenlet_switch(greenlet_t *g, void *value, void **result);

/* Raises an error in `g`: its pending switch returns GREENLET_THROWN, with `payload`
 * (any pointer, never freed by the library) as greenlet_error_payload() and `message`
 * (copied; NULL means "") as the message. An unstarted g dies without running; a dead g
 * forwards the error to its nearest live ancestor; throwing into the caller itself
 * returns GREENLET_THROWN at once. The result is what comes back, as for greenlet_switch:
 * if g does not handle the error, it dies and the error comes back to its parent. */
greenlet_status_t greenlet_throw(greenlet_t *g, void *payload, const char *message,
                                 void **result);

/* Throws a GreenletExit into `g`, asking it to finish. If g dies of it, the call returns
 * GREENLET_OK with *result NULL. An unstarted g dies without running. */
greenlet_status_t greenlet_kill(greenlet_t *g, void **result);

/* --- Dying with an error ------------------------------------------------------------- */

/* Makes the current greenlet die of an error with `payload` and `message` when its entry
 * returns: its parent's switch returns GREENLET_THROWN with that payload. Returns NULL,
 * for `return greenlet_fail(payload, "why");`. No effect in a main greenlet. */
void *greenlet_fail(void *payload, const char *message);

/* Makes the current greenlet die of its pending error when its entry returns (if none is
 * pending: of an error carrying greenlet_last_error()). Returns NULL, for
 * `if (status != GREENLET_OK) return greenlet_propagate();`. */
void *greenlet_propagate(void);

/* The payload of the current greenlet's pending error: what greenlet_throw or
 * greenlet_fail was given; NULL if none is pending or it is not a C error. */
void *greenlet_error_payload(void);

/* The message of the current greenlet's pending error ("" if none). */
const char *greenlet_error_message(void);

/* --- Handles and relations ----------------------------------------------------------- */

/* A new handle to the running greenlet; NULL only while the thread is exiting. */
greenlet_t *greenlet_current(void);

/* A new handle to this thread's main greenlet; NULL only while the thread is exiting. */
greenlet_t *greenlet_main(void);

/* Sets *out to a new handle to g's parent, or to NULL for a main greenlet. */
greenlet_status_t greenlet_parent(const greenlet_t *g, greenlet_t **out);

/* Makes `parent` the parent of `g` (any state). Errors: GREENLET_ERR_CYCLIC_PARENT,
 * GREENLET_ERR_CANNOT_REPARENT_MAIN, GREENLET_ERR_IN_TRACE_HOOK, handle errors (a parent
 * of another thread gives GREENLET_ERR_WRONG_THREAD). */
greenlet_status_t greenlet_set_parent(greenlet_t *g, greenlet_t *parent);

/* Adds a reference to `g`. */
greenlet_status_t greenlet_retain(greenlet_t *g);

/* Drops a reference to `g`; NULL is allowed and does nothing. See HANDLES AND OWNERSHIP
 * for what releasing the last reference does. */
greenlet_status_t greenlet_release(greenlet_t *g);

/* --- Queries ------------------------------------------------------------------------- */

/* The state of `g`, or GREENLET_STATE_INVALID if the handle cannot be used here. */
greenlet_state_t greenlet_state(const greenlet_t *g);

/* 1 if `g` is a main greenlet, 0 if not, -1 if the handle cannot be used here. */
int greenlet_is_main(const greenlet_t *g);

/* How many greenlets this thread holds handles to (each counts once). For leak checks. */
size_t greenlet_handle_count(void);

/* --- Tracing ------------------------------------------------------------------------- */

/* Installs `hook` as this thread's trace hook, replacing any other (NULL removes it). */
greenlet_status_t greenlet_settrace(greenlet_trace_fn hook, void *user_data);

/* --- Messages ------------------------------------------------------------------------ */

/* The message of this thread's last call that did not return GREENLET_OK ("" if none). */
const char *greenlet_last_error(void);

/* The name of a status code, e.g. "GREENLET_ERR_WRONG_THREAD"; "unknown status" else. */
const char *greenlet_status_name(int status);

/* The stack-switching backend, e.g. "asm-x86_64". */
const char *greenlet_backend_name(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GREENLET_H */
