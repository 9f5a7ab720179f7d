/* hello.c - a greenlet that counts, switching back to main at every step.
 *
 *     cc hello.c -o hello $(pkg-config --cflags --libs greenlet) && ./hello
 */
#include <stdint.h>
#include <stdio.h>

#include <greenlet.h>

static void *counter(void *arg, void *user_data) {
    (void)user_data;
    greenlet_t *home = greenlet_main();
    for (intptr_t i = 1; i <= (intptr_t)arg; i++) {
        /* Suspend here, handing i to main; go on when main switches back. */
        if (greenlet_switch(home, (void *)i, NULL) != GREENLET_OK) {
            greenlet_release(home);
            return greenlet_propagate(); /* killed or thrown into: pass it on */
        }
    }
    greenlet_release(home);
    return "done"; /* goes to the parent: main */
}

int main(void) {
    greenlet_t *g;
    if (greenlet_new(&g, counter, NULL, NULL, 0) != GREENLET_OK) {
        fprintf(stderr, "greenlet_new: %s\n", greenlet_last_error());
        return 1;
    }
    void *value;
    greenlet_status_t status = greenlet_switch(g, (void *)3, &value); /* starts counter */
    while (status == GREENLET_OK && greenlet_state(g) != GREENLET_STATE_DEAD) {
        printf("got %ld\n", (long)(intptr_t)value);
        status = greenlet_switch(g, NULL, &value); /* resume it */
    }
    if (status != GREENLET_OK) {
        fprintf(stderr, "switch: %s\n", greenlet_last_error());
        return 1;
    }
    printf("counter said %s\n", (const char *)value);
    greenlet_release(g);
    return 0;
}
