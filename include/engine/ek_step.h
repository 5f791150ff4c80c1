/*
 * ek_step.h - one prebound kernel call of the nogil executor.
 *
 * At prepare time every kernel binding can *bind* its call instead of running it: the
 * validated argument struct (ek_bind.h) is copied into a block behind an `ek_step` whose
 * function is the kernel's entry for the caller's instruction set, and the step is handed
 * to Python as a capsule named "engine.step".  The executor
 * (pyx/executor.pxi) copies the steps of a plan into one array and runs them in order
 * with the GIL released: no Python objects, no checks, no allocation per call.
 *
 * The capsule owns the block; the buffers it points to (arena, packed weights) are kept
 * alive by the plan that holds the capsule.
 */
#ifndef EK_STEP_H
#define EK_STEP_H

#include <Python.h>
#include <stdlib.h>
#include <string.h>

typedef void (*ek_step_fn)(const void *args);

typedef struct ek_step {
    ek_step_fn fn;
    void *args;
} ek_step;

#define EK_STEP_CAPSULE "engine.step"

static void ek_step_capsule_free(PyObject *cap)
{
    void *s = PyCapsule_GetPointer(cap, EK_STEP_CAPSULE);
    free(s);
}

/* A new capsule owning a copy of `size` bytes of arguments; NULL with MemoryError set. */
static PyObject *ek_step_new(ek_step_fn fn, const void *args, size_t size)
{
    /* header and argument block in one allocation; the block starts 16-byte aligned */
    size_t head = (sizeof(ek_step) + 15) & ~(size_t)15;
    ek_step *s = (ek_step *)malloc(head + (size ? size : 1));
    PyObject *cap;
    if (s == NULL) return PyErr_NoMemory();
    s->fn = fn;
    s->args = (char *)s + head;
    if (size) memcpy(s->args, args, size);
    cap = PyCapsule_New(s, EK_STEP_CAPSULE, ek_step_capsule_free);
    if (cap == NULL) free(s);
    return cap;
}

#endif /* EK_STEP_H */
