#include "version.h"

#include <openssl/crypto.h>
#include <event2/event.h>
#include <sodium.h>

#ifndef TRP_COMMIT
#define TRP_COMMIT "unknown"
#endif

void
version_print(FILE *f, const char *progname)
{
	fprintf(f, "%s %s (commit %s)\n", progname, TRP_VERSION, TRP_COMMIT);
	fprintf(f, "%s, libevent %s, libsodium %s\n",
	    OpenSSL_version(OPENSSL_VERSION), event_get_version(),
	    sodium_version_string());
}
