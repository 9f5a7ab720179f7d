// C++ exceptions inside greenlets: thrown and caught within one greenlet across any number
// of switches, with several greenlets suspended inside try blocks at once, and RAII
// destructors run when a greenlet is killed and returns.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"

namespace {

struct Tagged {
    int owner;
};

// Switches to main `times` times, returning false if the switch did not succeed.
bool visit_main(int times) {
    greenlet_t *home = greenlet_main();
    bool ok = true;
    for (int i = 0; i < times && ok; i++) {
        ok = greenlet_switch(home, nullptr, nullptr) == GREENLET_OK;
    }
    greenlet_release(home);
    return ok;
}

int depth_of_catches = 0;

// Each greenlet enters a try block, switches away (other greenlets do the same), and then
// throws; the exception must be caught by its own handler, in its own greenlet.
void *thrower(void *arg, void *user_data) {
    int id = static_cast<int>(reinterpret_cast<intptr_t>(arg));
    int *caught_by = static_cast<int *>(user_data);
    try {
        try {
            if (!visit_main(id + 1)) {
                return greenlet_propagate();
            }
            throw Tagged{id};
        } catch (const std::runtime_error &) {
            caught_by[id] = -100; // wrong handler
        }
    } catch (const Tagged &t) {
        depth_of_catches++;
        caught_by[id] = t.owner;
        // Switch again inside the handler's scope, then leave it cleanly.
        // (No other greenlet enters a catch block meanwhile: the C++ runtime keeps one
        // stack of caught exceptions per thread, so interleaved handlers must stay LIFO.)
    }
    return arg;
}

void exceptions_are_caught_in_the_greenlet_that_threw_them() {
    const int n = 4;
    int caught_by[n] = {-1, -1, -1, -1};
    std::vector<greenlet_t *> gs(n);
    for (int i = 0; i < n; i++) {
        CHECK_STATUS(greenlet_new(&gs[i], thrower, caught_by, nullptr, 0), GREENLET_OK);
        CHECK_STATUS(greenlet_switch(gs[i], INT2PTR(i), nullptr), GREENLET_OK);
    }
    // All four are suspended inside their try blocks. Resume them round-robin, in reverse
    // order, until all are done.
    bool any = true;
    while (any) {
        any = false;
        for (int i = n - 1; i >= 0; i--) {
            if (greenlet_state(gs[i]) != GREENLET_STATE_DEAD) {
                any = true;
                CHECK_STATUS(greenlet_switch(gs[i], nullptr, nullptr), GREENLET_OK);
            }
        }
    }
    for (int i = 0; i < n; i++) {
        CHECK(caught_by[i] == i);
        greenlet_release(gs[i]);
    }
    CHECK(depth_of_catches == n);
}

// Throws through several C++ frames and a catch/rethrow, with switches in between.
int level(int n) {
    if (n == 0) {
        visit_main(1);
        throw std::runtime_error("deep");
    }
    try {
        return level(n - 1) + 1;
    } catch (const std::runtime_error &) {
        visit_main(1);
        throw; // rethrow after a switch
    }
}

void *rethrower(void *, void *user_data) {
    std::string *what = static_cast<std::string *>(user_data);
    try {
        level(5);
    } catch (const std::exception &e) {
        *what = e.what();
    }
    return nullptr;
}

void a_rethrow_after_switches_reaches_the_outer_handler() {
    std::string what;
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, rethrower, &what, nullptr, 0), GREENLET_OK);
    int switches = 0;
    while (greenlet_state(g) != GREENLET_STATE_DEAD) {
        CHECK_STATUS(greenlet_switch(g, nullptr, nullptr), GREENLET_OK);
        switches++;
        // Main throws and catches its own exception between the greenlet's switches.
        try {
            throw std::logic_error("main's own");
        } catch (const std::logic_error &e) {
            CHECK(std::string(e.what()) == "main's own");
        }
    }
    CHECK(what == "deep");
    CHECK(switches == 1 + 5 + 1); // the throw, five rethrows, the end
    greenlet_release(g);
}

struct Guard {
    int *destroyed;
    ~Guard() { (*destroyed)++; }
};

void *guarded(void *, void *user_data) {
    Guard guard{static_cast<int *>(user_data)};
    std::vector<std::string> owned(10, std::string(100, 'x')); // freed when we return
    greenlet_t *home = greenlet_main();
    greenlet_status_t status = greenlet_switch(home, nullptr, nullptr);
    greenlet_release(home);
    if (status != GREENLET_OK) {
        return greenlet_propagate(); // destructors run as we return
    }
    return nullptr;
}

void a_killed_greenlet_runs_its_destructors() {
    int destroyed = 0;
    greenlet_t *g;
    CHECK_STATUS(greenlet_new(&g, guarded, &destroyed, nullptr, 0), GREENLET_OK);
    CHECK_STATUS(greenlet_switch(g, nullptr, nullptr), GREENLET_OK);
    CHECK(destroyed == 0);
    CHECK_STATUS(greenlet_release(g), GREENLET_OK); // the last reference: killed
    CHECK(destroyed == 1);
}

void *escaping(void *, void *) {
    throw std::runtime_error("nobody catches this");
}

// An exception escaping an entry function is defined behaviour (the `C-unwind` ABI): the
// process aborts, or the parent's switch returns GREENLET_PANIC. Tried in a child process.
void an_escaping_exception_aborts_or_arrives_as_a_panic() {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        greenlet_t *g;
        greenlet_new(&g, escaping, nullptr, nullptr, 0);
        int status = greenlet_switch(g, nullptr, nullptr);
        int dead = greenlet_state(g) == GREENLET_STATE_DEAD;
        greenlet_release(g);
        _exit(status == GREENLET_PANIC && dead ? 42 : 1);
    }
    int status = 0;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    bool panicked = WIFEXITED(status) && WEXITSTATUS(status) == 42;
    printf("  the child %s\n", aborted ? "aborted" : panicked ? "got GREENLET_PANIC" : "did neither");
    CHECK(aborted || panicked);
}

} // namespace

int main() {
    RUN(exceptions_are_caught_in_the_greenlet_that_threw_them);
    RUN(a_rethrow_after_switches_reaches_the_outer_handler);
    RUN(a_killed_greenlet_runs_its_destructors);
    RUN(an_escaping_exception_aborts_or_arrives_as_a_panic);
    return check_summary();
}
