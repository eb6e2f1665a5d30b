// cmpi.c — see cmpi.h. The only file that includes mpi.h.
#include "cmpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <time.h>

static int (*stop_callback)(void);

void cmpi_set_stop_callback(int (*should_stop)(void)) { stop_callback = should_stop; }

int cmpi_launched_by_mpirun(void) {
    // Open MPI sets OMPI_COMM_WORLD_SIZE in every process mpirun starts; PMIx launchers set PMIX_RANK.
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL;
}

int cmpi_init(int *rank, int *size) {
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return CMPI_MPI_ERROR;
    if (MPI_Comm_rank(MPI_COMM_WORLD, rank) != MPI_SUCCESS) return CMPI_MPI_ERROR;
    if (MPI_Comm_size(MPI_COMM_WORLD, size) != MPI_SUCCESS) return CMPI_MPI_ERROR;
    return CMPI_OK;
}

int cmpi_finalize(void) { return MPI_Finalize() == MPI_SUCCESS ? CMPI_OK : CMPI_MPI_ERROR; }

void cmpi_abort(int exit_code) { MPI_Abort(MPI_COMM_WORLD, exit_code); }

static MPI_Datatype datatype(cmpi_element element) {
    switch (element) {
    case CMPI_FLOAT32: return MPI_FLOAT;
    case CMPI_FLOAT64: return MPI_DOUBLE;
    case CMPI_INT64: return MPI_INT64_T;
    }
    return MPI_DATATYPE_NULL;
}

static size_t element_bytes(cmpi_element element) { return element == CMPI_FLOAT32 ? 4 : 8; }

/// Polls one request to completion. Spins first (a collective between busy ranks completes in microseconds),
/// then sleeps in growing steps up to 1 ms, so a rank waiting for a slower one does not take a core from it
/// (ranks may share cores under --oversubscribe).
static int wait_polling(MPI_Request *request) {
    long sleep_ns = 0;
    for (long polls = 0;; polls++) {
        int done = 0;
        if (MPI_Test(request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return CMPI_MPI_ERROR;
        if (done) return CMPI_OK;
        if (stop_callback && stop_callback()) {
            // The peer this waits on may be gone: leave the request to MPI_Finalize/exit, do not wait for it.
            return CMPI_STOPPED;
        }
        if (polls > 20000) {
            sleep_ns = sleep_ns == 0 ? 20000 : (sleep_ns * 2 > 1000000 ? 1000000 : sleep_ns * 2);
            struct timespec pause = {0, sleep_ns};
            nanosleep(&pause, NULL);
        }
    }
}

int cmpi_allreduce_sum(void *values, int64_t count, cmpi_element element) {
    MPI_Datatype type = datatype(element);
    if (count < 0 || type == MPI_DATATYPE_NULL) return CMPI_BAD_ARGUMENT;
    char *base = values;
    const int64_t piece = INT_MAX / 2;  // elements per MPI call
    for (int64_t done = 0; done < count; done += piece) {
        int64_t n = count - done < piece ? count - done : piece;
        MPI_Request request;
        if (MPI_Iallreduce(MPI_IN_PLACE, base + done * (int64_t)element_bytes(element), (int)n, type, MPI_SUM,
                           MPI_COMM_WORLD, &request) != MPI_SUCCESS)
            return CMPI_MPI_ERROR;
        int status = wait_polling(&request);
        if (status != CMPI_OK) return status;
    }
    return CMPI_OK;
}

struct cmpi_request {
    MPI_Request request;
};

cmpi_request *cmpi_iallreduce_sum(void *values, int64_t count, cmpi_element element) {
    MPI_Datatype type = datatype(element);
    if (count < 0 || count > INT_MAX || type == MPI_DATATYPE_NULL) return NULL;
    cmpi_request *handle = malloc(sizeof *handle);
    if (!handle) return NULL;
    if (MPI_Iallreduce(MPI_IN_PLACE, values, (int)count, type, MPI_SUM, MPI_COMM_WORLD, &handle->request) != MPI_SUCCESS) {
        free(handle);
        return NULL;
    }
    return handle;
}

int cmpi_test(cmpi_request *request) {
    int done = 0;
    if (MPI_Test(&request->request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return CMPI_MPI_ERROR;
    return done;
}

int cmpi_wait(cmpi_request *request) {
    int status = wait_polling(&request->request);
    free(request);
    return status;
}

int cmpi_allgatherv(const void *send, int64_t send_units, void *receive, const int64_t *unit_counts,
                    const int64_t *unit_offsets, int64_t unit_bytes) {
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (unit_bytes <= 0 || unit_bytes > INT_MAX || send_units < 0 || send_units > INT_MAX) return CMPI_BAD_ARGUMENT;
    int *counts = malloc(sizeof(int) * (size_t)size), *offsets = malloc(sizeof(int) * (size_t)size);
    if (!counts || !offsets) {
        free(counts);
        free(offsets);
        return CMPI_BAD_ARGUMENT;
    }
    int status = CMPI_OK;
    for (int r = 0; r < size; r++) {
        if (unit_counts[r] < 0 || unit_counts[r] > INT_MAX || unit_offsets[r] < 0 || unit_offsets[r] > INT_MAX) status = CMPI_BAD_ARGUMENT;
        counts[r] = (int)unit_counts[r];
        offsets[r] = (int)unit_offsets[r];
    }
    MPI_Datatype unit = MPI_DATATYPE_NULL;
    if (status == CMPI_OK && MPI_Type_contiguous((int)unit_bytes, MPI_BYTE, &unit) == MPI_SUCCESS && MPI_Type_commit(&unit) == MPI_SUCCESS) {
        MPI_Request request;
        if (MPI_Iallgatherv(send, (int)send_units, unit, receive, counts, offsets, unit, MPI_COMM_WORLD, &request) == MPI_SUCCESS)
            status = wait_polling(&request);
        else
            status = CMPI_MPI_ERROR;
    } else if (status == CMPI_OK) {
        status = CMPI_MPI_ERROR;
    }
    if (unit != MPI_DATATYPE_NULL && status != CMPI_STOPPED) MPI_Type_free(&unit);
    free(counts);
    free(offsets);
    return status;
}

int cmpi_broadcast(void *buffer, int64_t bytes, int root) {
    if (bytes < 0) return CMPI_BAD_ARGUMENT;
    char *base = buffer;
    const int64_t piece = 1 << 30;
    for (int64_t done = 0; done < bytes; done += piece) {
        int64_t n = bytes - done < piece ? bytes - done : piece;
        MPI_Request request;
        if (MPI_Ibcast(base + done, (int)n, MPI_BYTE, root, MPI_COMM_WORLD, &request) != MPI_SUCCESS) return CMPI_MPI_ERROR;
        int status = wait_polling(&request);
        if (status != CMPI_OK) return status;
    }
    return CMPI_OK;
}

int cmpi_barrier(void) {
    MPI_Request request;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &request) != MPI_SUCCESS) return CMPI_MPI_ERROR;
    return wait_polling(&request);
}
