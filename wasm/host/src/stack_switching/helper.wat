;; The greenlet_fiber_v1 functions on the Wasm stack-switching proposal (mechanism A).
;;
;; Read whole before changing: the three ways control moves (resume from the root, suspend
;; to the root, switch between fibers) must stay symmetric, or a continuation ends up in
;; the wrong slot.
;;
;; Model
;; - Every fiber is a slot (1..65535) holding a continuation in $conts. The root (slot 0)
;;   is the code the host called: it runs on the host's stack, never in a continuation.
;; - The root starts a transfer with `resume`, installing the only handlers: `$to_root`
;;   (a fiber suspends back to the root) and `$sw` (fibers `switch` among themselves with
;;   no hop through the root).
;; - Every continuation has type $ct: it takes (value, k) where k is the continuation of
;;   whoever transferred to it, or null when that was the root. The receiver stores k in
;;   the slot named by $last_from: that is how a suspended fiber gets back into $conts.
;; - A fiber's body is $trampoline, which loops forever: run the bound entry inside a
;;   try_table; `exit` throws $exit through the guest's frames (which have no handlers, so
;;   no guest code runs), the trampoline marks the slot EMPTY and transfers to the target.
;; - No exception is ever allocated after instantiation: $init throws and catches one
;;   $exit exception with catch_ref and keeps it in $exn; every exit rethrows that same
;;   object with throw_ref, passing (target, value) in $exit_to / $exit_value. Allocating
;;   one per exit would fill the GC heap, and wasmtime 48's collector panics while tracing
;;   roots through any suspended continuation ("expected one more VMStackLimits than
;;   continuations"), which a greenlet program always has. With no allocation, no
;;   collection ever runs. Resuming that parked continuation later starts the next bound entry, so a
;;   continuation (and its native stack) is made once and reused: wasmtime frees
;;   continuations only when the store drops.
;; - Freed slots give their parked continuation to $pool for the next `new`.
;; - Resetting a SUSPENDED fiber transfers to it with its kill flag set: its pending
;;   transfer throws $exit(back to the resetter), which unwinds its frames the same way.
;;
;; Slot record at slot * 32 in this module's memory:
;;   +0 state  +4 generation  +8 entry  +12 arg  +16 lo  +20 hi  +24 saved sp  +28 kill
;; Free-slot stack: i32s from FREE_BASE = 65536 * 32 = 0x200000.
;; Ids: (generation << 16) | slot; generation in 0..32767, so ids are positive.
(module
  (rec
    (type $ft (func (param i32 (ref null $ct))))
    (type $ct (cont $ft)))
  (type $entry_ft (func (param i32 i32)))

  ;; A fiber going back to the root: sends a value, gets (value, k) when resumed.
  (tag $to_root (param i32) (result i32 (ref null $ct)))
  ;; Fiber-to-fiber switches, handled at the root's `resume`.
  (tag $sw)
  ;; Unwinds an exiting fiber's frames to its trampoline (payload unused: see $exit_to).
  (tag $exit (param i32 i32))

  (import "guest" "__stack_pointer" (global $sp (mut i32)))
  (import "guest" "__indirect_function_table" (table $gt 0 funcref))
  ;; Reports a guest bug that has no error result (code, slot) and returns an error, so
  ;; the whole run traps with the host's message.
  (import "host" "fatal" (func $fatal (param i32 i32)))

  (memory (export "slots") 37)
  (table $conts 65536 (ref null $ct))
  (table $pool 65536 (ref null $ct))

  (global $limit (export "fiber_limit") (mut i32) (i32.const 1000))
  (global $current (mut i32) (i32.const 0))
  (global $last_from (mut i32) (i32.const 0))
  (global $value (mut i32) (i32.const 0))
  (global $live (export "live") (mut i32) (i32.const 0))
  (global $next_slot (mut i32) (i32.const 1))
  (global $free_top (mut i32) (i32.const 0))
  (global $pool_top (mut i32) (i32.const 0))
  (global $created (export "continuations") (mut i32) (i32.const 0))
  ;; The one $exit exception, made by $init and rethrown by every exit.
  (global $exn (mut exnref) (ref.null exn))
  (global $exit_to (mut i32) (i32.const 0))
  (global $exit_value (mut i32) (i32.const 0))

  (elem declare func $trampoline)

  ;; fatal codes (the host's FatalCode)
  ;; 1: an entry returned   2: a shadow stack pointer outside its fiber's stack
  ;; 3: a continuation returned (internal)

  (func $addr (param $slot i32) (result i32)
    (i32.shl (local.get $slot) (i32.const 5)))

  (func $state_of (param $slot i32) (result i32)
    (i32.load (call $addr (local.get $slot))))

  (func $set_state (param $slot i32) (param $state i32)
    (i32.store (call $addr (local.get $slot)) (local.get $state)))

  (func $id_of (param $slot i32) (result i32)
    (i32.or
      (i32.shl (i32.load offset=4 (call $addr (local.get $slot))) (i32.const 16))
      (local.get $slot)))

  ;; The slot an id names, or E_NO_SUCH_FIBER (-1). The root is slot 0.
  (func $resolve (param $id i32) (result i32)
    (local $slot i32)
    (if (i32.eqz (local.get $id)) (then (return (i32.const 0))))
    (if (i32.lt_s (local.get $id) (i32.const 0)) (then (return (i32.const -1))))
    (local.set $slot (i32.and (local.get $id) (i32.const 0xffff)))
    (if (i32.or (i32.eqz (local.get $slot))
                (i32.ge_u (local.get $slot) (global.get $next_slot)))
      (then (return (i32.const -1))))
    (if (i32.ne (i32.load offset=4 (call $addr (local.get $slot)))
                (i32.shr_u (local.get $id) (i32.const 16)))
      (then (return (i32.const -1))))
    (if (i32.eqz (call $state_of (local.get $slot))) (then (return (i32.const -1))))
    (local.get $slot))

  ;; The slot of a fiber that can be transferred to, or an error.
  (func $resolve_target (param $id i32) (result i32)
    (local $slot i32) (local $state i32)
    (local.set $slot (call $resolve (local.get $id)))
    (if (i32.lt_s (local.get $slot) (i32.const 0)) (then (return (local.get $slot))))
    (if (i32.eq (local.get $slot) (global.get $current)) (then (return (i32.const -3))))
    (local.set $state (call $state_of (local.get $slot)))
    (if (i32.eq (local.get $state) (i32.const 1)) (then (return (i32.const -2))))
    (local.get $slot))

  ;; Runs after any transfer into the current fiber: keep the sender's continuation.
  (func $received (param $v i32) (param $k (ref null $ct))
    (global.set $value (local.get $v))
    (if (i32.eqz (ref.is_null (local.get $k)))
      (then (table.set $conts (global.get $last_from) (local.get $k)))))

  ;; Moves control from the current fiber to slot $to (NEW or SUSPENDED), sending $v.
  ;; The caller has already set the current fiber's new state. Returns once the current
  ;; fiber is resumed; $value then holds what was sent.
  (func $transfer (param $to i32) (param $v i32)
    (local $from i32) (local $k (ref null $ct)) (local $sp_now i32) (local $a i32)
    (local.set $from (global.get $current))
    (local.set $sp_now (global.get $sp))
    (local.set $a (call $addr (local.get $from)))
    (if (local.get $from)
      (then
        (if (i32.or
              (i32.lt_u (local.get $sp_now) (i32.load offset=16 (local.get $a)))
              (i32.gt_u (local.get $sp_now) (i32.load offset=20 (local.get $a))))
          (then (call $fatal (i32.const 2) (local.get $from)) (unreachable)))))
    (i32.store offset=24 (local.get $a) (local.get $sp_now))
    (global.set $last_from (local.get $from))
    (global.set $current (local.get $to))
    (call $set_state (local.get $to) (i32.const 3))
    (if (i32.eqz (local.get $from))
      (then
        ;; The root: resume the target and wait until some fiber suspends back to us.
        (local.set $k (table.get $conts (local.get $to)))
        (table.set $conts (local.get $to) (ref.null $ct))
        (block $back (result i32 (ref $ct))
          (resume $ct (on $to_root $back) (on $sw switch)
            (local.get $v) (ref.null $ct) (local.get $k))
          (call $fatal (i32.const 3) (global.get $current))
          (unreachable))
        (local.set $k)
        (global.set $value)
        (table.set $conts (global.get $last_from) (local.get $k)))
      (else
        (if (i32.eqz (local.get $to))
          (then
            (call $received (suspend $to_root (local.get $v))))
          (else
            (local.set $k (table.get $conts (local.get $to)))
            (table.set $conts (local.get $to) (ref.null $ct))
            (call $received (switch $ct $sw (local.get $v) (local.get $k)))))))
    ;; Resumed: we are current again.
    (local.set $a (call $addr (global.get $current)))
    (global.set $sp (i32.load offset=24 (local.get $a)))
    (if (i32.load offset=28 (local.get $a))
      (then (call $throw_exit (global.get $last_from) (i32.const 0)))))

  ;; Ends the running fiber: unwinds to its trampoline, which transfers to slot $to.
  (func $throw_exit (param $to i32) (param $v i32)
    (global.set $exit_to (local.get $to))
    (global.set $exit_value (local.get $v))
    (throw_ref (global.get $exn)))

  ;; The body of every continuation; see the header.
  (func $trampoline (type $ft)
    (local $self i32) (local $a i32) (local $to i32) (local $v i32)
    (call $received (local.get 0) (local.get 1))
    (loop $life
      (local.set $self (global.get $current))
      (local.set $a (call $addr (local.get $self)))
      (block $exited (result i32 i32)
        (global.set $sp (i32.load offset=20 (local.get $a)))
        (try_table (catch $exit $exited)
          (call_indirect $gt (type $entry_ft)
            (global.get $value)
            (i32.load offset=12 (local.get $a))
            (i32.load offset=8 (local.get $a))))
        (call $fatal (i32.const 1) (local.get $self))
        (unreachable))
      (drop)
      (drop)
      (local.set $to (global.get $exit_to))
      (local.set $v (global.get $exit_value))
      (i32.store offset=28 (local.get $a) (i32.const 0))
      (call $set_state (local.get $self) (i32.const 1))
      (call $transfer (local.get $to) (local.get $v))
      (br $life)))

  (func (export "limit") (result i32) (global.get $limit))

  (func (export "new") (param $lo i32) (param $hi i32) (result i32)
    (local $slot i32) (local $a i32) (local $k (ref null $ct))
    (if (i32.or (i32.or (i32.eqz (local.get $lo)) (i32.ge_u (local.get $lo) (local.get $hi)))
                (i32.and (i32.or (local.get $lo) (local.get $hi)) (i32.const 15)))
      (then (return (i32.const -6))))
    (if (i32.ge_u (global.get $live) (global.get $limit)) (then (return (i32.const -4))))
    (if (global.get $free_top)
      (then
        (global.set $free_top (i32.sub (global.get $free_top) (i32.const 1)))
        (local.set $slot (i32.load offset=0x200000
          (i32.shl (global.get $free_top) (i32.const 2)))))
      (else
        (if (i32.ge_u (global.get $next_slot) (i32.const 65536))
          (then (return (i32.const -4))))
        (local.set $slot (global.get $next_slot))
        (global.set $next_slot (i32.add (global.get $next_slot) (i32.const 1)))))
    (if (global.get $pool_top)
      (then
        (global.set $pool_top (i32.sub (global.get $pool_top) (i32.const 1)))
        (local.set $k (table.get $pool (global.get $pool_top)))
        (table.set $pool (global.get $pool_top) (ref.null $ct)))
      (else
        (local.set $k (cont.new $ct (ref.func $trampoline)))
        (global.set $created (i32.add (global.get $created) (i32.const 1)))))
    (table.set $conts (local.get $slot) (local.get $k))
    (local.set $a (call $addr (local.get $slot)))
    (i32.store (local.get $a) (i32.const 1))
    (i32.store offset=8 (local.get $a) (i32.const 0))
    (i32.store offset=12 (local.get $a) (i32.const 0))
    (i32.store offset=16 (local.get $a) (local.get $lo))
    (i32.store offset=20 (local.get $a) (local.get $hi))
    (i32.store offset=24 (local.get $a) (local.get $hi))
    (i32.store offset=28 (local.get $a) (i32.const 0))
    (global.set $live (i32.add (global.get $live) (i32.const 1)))
    (call $id_of (local.get $slot)))

  (func (export "bind") (param $id i32) (param $entry i32) (param $arg i32) (result i32)
    (local $slot i32) (local $state i32) (local $f funcref)
    (local.set $slot (call $resolve (local.get $id)))
    (if (i32.lt_s (local.get $slot) (i32.const 0)) (then (return (local.get $slot))))
    (if (i32.eqz (local.get $slot)) (then (return (i32.const -10))))
    (local.set $state (call $state_of (local.get $slot)))
    (if (i32.gt_u (local.get $state) (i32.const 2)) (then (return (i32.const -7))))
    (if (i32.ge_u (local.get $entry) (table.size $gt)) (then (return (i32.const -9))))
    (local.set $f (table.get $gt (local.get $entry)))
    (if (i32.eqz (ref.test (ref $entry_ft) (local.get $f))) (then (return (i32.const -9))))
    (call $set_state (local.get $slot) (i32.const 2))
    (i32.store offset=8 (call $addr (local.get $slot)) (local.get $entry))
    (i32.store offset=12 (call $addr (local.get $slot)) (local.get $arg))
    (i32.const 0))

  (func (export "switch") (param $id i32) (param $v i32) (result i32)
    (local $slot i32)
    (local.set $slot (call $resolve_target (local.get $id)))
    (if (i32.lt_s (local.get $slot) (i32.const 0)) (then (return (local.get $slot))))
    (call $set_state (global.get $current) (i32.const 4))
    (call $transfer (local.get $slot) (local.get $v))
    (i32.const 0))

  (func (export "value") (result i32) (global.get $value))

  (func (export "exit") (param $id i32) (param $v i32) (result i32)
    (local $slot i32)
    (if (i32.eqz (global.get $current)) (then (return (i32.const -8))))
    (local.set $slot (call $resolve_target (local.get $id)))
    (if (i32.lt_s (local.get $slot) (i32.const 0)) (then (return (local.get $slot))))
    (call $throw_exit (local.get $slot) (local.get $v))
    (unreachable))

  (func (export "current") (result i32)
    (if (result i32) (global.get $current)
      (then (call $id_of (global.get $current)))
      (else (i32.const 0))))

  (func (export "state") (param $id i32) (result i32)
    (local $slot i32)
    (local.set $slot (call $resolve (local.get $id)))
    (if (i32.lt_s (local.get $slot) (i32.const 0)) (then (return (i32.const 0))))
    (if (i32.eqz (local.get $slot))
      (then (return (select (i32.const 3) (i32.const 4) (i32.eqz (global.get $current))))))
    (call $state_of (local.get $slot)))

  ;; Discards a SUSPENDED or NEW fiber's frames; 0 or an error.
  (func $reset (param $slot i32) (result i32)
    (local $state i32)
    (if (i32.eqz (local.get $slot)) (then (return (i32.const -10))))
    (if (i32.eq (local.get $slot) (global.get $current)) (then (return (i32.const -3))))
    (local.set $state (call $state_of (local.get $slot)))
    (if (i32.eq (local.get $state) (i32.const 2))
      (then (call $set_state (local.get $slot) (i32.const 1))))
    (if (i32.eq (local.get $state) (i32.const 4))
      (then
        ;; Run it with its kill flag set: it throws $exit back to us.
        (i32.store offset=28 (call $addr (local.get $slot)) (i32.const 1))
        (call $set_state (global.get $current) (i32.const 4))
        (call $transfer (local.get $slot) (i32.const 0))))
    (i32.const 0))

  (func (export "reset") (param $id i32) (result i32)
    (local $slot i32)
    (local.set $slot (call $resolve (local.get $id)))
    (if (i32.lt_s (local.get $slot) (i32.const 0)) (then (return (local.get $slot))))
    (call $reset (local.get $slot)))

  (func (export "free") (param $id i32) (result i32)
    (local $slot i32) (local $status i32) (local $a i32)
    (local.set $slot (call $resolve (local.get $id)))
    (if (i32.lt_s (local.get $slot) (i32.const 0)) (then (return (local.get $slot))))
    (local.set $status (call $reset (local.get $slot)))
    (if (i32.lt_s (local.get $status) (i32.const 0)) (then (return (local.get $status))))
    ;; EMPTY now, its continuation parked at the top of its trampoline loop: pool it.
    (table.set $pool (global.get $pool_top) (table.get $conts (local.get $slot)))
    (table.set $conts (local.get $slot) (ref.null $ct))
    (global.set $pool_top (i32.add (global.get $pool_top) (i32.const 1)))
    (local.set $a (call $addr (local.get $slot)))
    (i32.store (local.get $a) (i32.const 0))
    (i32.store offset=4 (local.get $a)
      (i32.and (i32.add (i32.load offset=4 (local.get $a)) (i32.const 1)) (i32.const 0x7fff)))
    (i32.store offset=0x200000 (i32.shl (global.get $free_top) (i32.const 2)) (local.get $slot))
    (global.set $free_top (i32.add (global.get $free_top) (i32.const 1)))
    (global.set $live (i32.sub (global.get $live) (i32.const 1)))
    (i32.const 0))

  ;; The root starts as the running fiber; the one exception object is made here, before
  ;; any continuation exists.
  (func $init
    (call $set_state (i32.const 0) (i32.const 3))
    (block $made (result i32 i32 exnref)
      (try_table (catch_ref $exit $made)
        (throw $exit (i32.const 0) (i32.const 0)))
      (unreachable))
    (global.set $exn)
    (drop)
    (drop))
  (start $init)
)
