// cmpi.h — the few MPI calls data-parallel training needs, behind a header that does not include mpi.h.
//
// Swift sees plain C types only: Open MPI's handles (MPI_Comm, MPI_Datatype, MPI_Request) are pointers to
// library globals that Swift cannot import as constants. Every collective is on MPI_COMM_WORLD. Counts are
// int64_t here and split into MPI's int-sized pieces inside, so a 25.6 M-gradient all-reduce or a gather of
// millions of 8 KB feature rows never overflows MPI's `int count`.
//
// Waiting is polled, not blocking: a wait gives up when `cmpi_stop_requested()` turns true (the caller's
// SIGTERM/SIGINT flag, set by mpirun when another rank dies). Open MPI's blocking calls would wait on a dead peer
// until mpirun's SIGKILL, leaving no chance to keep the last finished epoch.
#ifndef CMPI_H
#define CMPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CMPI_OK = 0,
    /// A wait gave up because the stop callback said so (a signal arrived); the collective did not complete.
    CMPI_STOPPED = -1,
    /// A count or size outside what this wrapper or MPI accepts.
    CMPI_BAD_ARGUMENT = -2,
    /// MPI returned an error (Open MPI's default handler aborts first, so this is rarely seen).
    CMPI_MPI_ERROR = -3,
};

typedef enum { CMPI_FLOAT32 = 0, CMPI_FLOAT64 = 1, CMPI_INT64 = 2 } cmpi_element;

/// 1 when this process was started by mpirun/mpiexec (Open MPI's or PMIx's environment), else 0.
int cmpi_launched_by_mpirun(void);

/// MPI_Init_thread (funneled: only the thread that calls these functions uses MPI), then rank and size of
/// MPI_COMM_WORLD. Returns CMPI_OK or CMPI_MPI_ERROR.
int cmpi_init(int *rank, int *size);
int cmpi_finalize(void);
/// Ends every process of the job (MPI_Abort on MPI_COMM_WORLD).
void cmpi_abort(int exit_code);

/// The caller's stop flag, polled while waiting (NULL: never stop).
void cmpi_set_stop_callback(int (*should_stop)(void));

/// In-place element-wise sum over all ranks.
int cmpi_allreduce_sum(void *values, int64_t count, cmpi_element element);

/// A nonblocking in-place sum (MPI_Iallreduce); count must fit an int. NULL on failure.
typedef struct cmpi_request cmpi_request;
cmpi_request *cmpi_iallreduce_sum(void *values, int64_t count, cmpi_element element);
/// Drives MPI's progress; 1 when the request is complete, 0 when not, <0 on error. Does not free it.
int cmpi_test(cmpi_request *request);
/// Waits for completion (polling the stop callback) and frees the request, also when it returns CMPI_STOPPED.
int cmpi_wait(cmpi_request *request);

/// Every rank's `send_units` units of `unit_bytes` bytes, concatenated in rank order into `receive` on every rank.
/// `unit_counts[r]` and `unit_offsets[r]` (in units) describe rank r's part; all must fit an int.
int cmpi_allgatherv(const void *send, int64_t send_units, void *receive, const int64_t *unit_counts,
                    const int64_t *unit_offsets, int64_t unit_bytes);

/// `bytes` bytes from rank `root` to every rank.
int cmpi_broadcast(void *buffer, int64_t bytes, int root);

int cmpi_barrier(void);

#ifdef __cplusplus
}
#endif

#endif
