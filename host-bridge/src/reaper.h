/* The status records tscriu_reaper (src/reaper.c) writes to the bridge
 * (src/spawn.c) through a pipe. */
#ifndef TSCRIU_REAPER_H
#define TSCRIU_REAPER_H

#include <stdint.h>

#define REAPER_PID   'P' /* value: the workload's pid */
#define REAPER_ERROR 'E' /* value: errno of the step named in stage */

struct reaper_record {
	char tag;
	char stage[31];
	int32_t value;
};

#define REAPER_NAME "tscriu_reaper"

/* The most fds spawnDetached passes to the workload (as 4, 5, ...). */
#define REAPER_MAX_FDS 64

#endif
