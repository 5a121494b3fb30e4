#include "nice.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errstr.h"

int nice_thread(unsigned increment, char *errstr, size_t errstr_size)
{
	if (increment == 0)
		return 0;
	errno = 0;
	int base = getpriority(PRIO_PROCESS, 0);
	if (base == -1 && errno != 0) {
		set_errstr(errstr, errstr_size, "getpriority: %s", strerror(errno));
		return -1;
	}
	int target = base + (int)(increment > 19 ? 19 : increment);
	if (target > 19)
		target = 19;
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), target) != 0) {
		set_errstr(errstr, errstr_size, "setpriority: %s", strerror(errno));
		return -1;
	}
	return 0;
}
