/*
 * Allocation storm for bench/overhead.py: socketpair+close and open+close in a
 * loop for the given seconds (slab allocations and frees, sockets through
 * RCU), then prints the cycles per second. Usage: storm SECONDS [FILE]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 3.0;
	const char *path = argc > 2 ? argv[2] : "/proc/self/stat";
	long cycles = 0;
	double start = now(), end = start + secs;

	while (1) {
		for (int i = 0; i < 256; i++) {
			int sv[2];
			if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
				close(sv[0]);
				close(sv[1]);
			}
			int fd = open(path, O_RDONLY);
			if (fd >= 0)
				close(fd);
		}
		cycles += 256;
		if (now() >= end)
			break;
	}
	printf("%.0f\n", cycles / (now() - start));
	return 0;
}
