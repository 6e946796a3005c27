/*
 * An LD_PRELOAD shim that lets Debian's ipvsadm 1.31 run on a kernel without IPVS, so its
 * own output can serve as the oracle for halb's ipvsadm parser and formatter.
 *
 * libipvs falls back from generic netlink (no "IPVS" family here) to the old sockopt API on a
 * raw socket. This shim answers that API from a text file instead of the kernel:
 *
 *   HALB_FAKE_IPVS_TABLE   the table, one record per line (see below); absent = empty table
 *   HALB_FAKE_IPVS_ERRNO   errno every set-command fails with (0 or absent: they succeed)
 *   HALB_FAKE_IPVS_LOG     file every set-command is appended to, one line each
 *   HALB_FAKE_IPVS_CONN    file read instead of /proc/net/ip_vs_conn
 *
 * Table records (numbers in decimal, addresses dotted quad, stats order conns inpkts outpkts
 * inbytes outbytes cps inpps outpps inbps outbps):
 *   T tcp tcpfin udp
 *   S proto addr port fwmark sched flags timeout netmask <10 stats>
 *   D addr port conn_flags weight u_thresh l_thresh active inactive persist <10 stats>
 * D records belong to the S record before them.
 *
 * Nothing reaches the kernel: the raw socket is /dev/null, and every IPVS sockopt is answered
 * here. Nothing reaches the network either: gethostbyname / gethostbyaddr (what ipvsadm
 * resolves names with) know "localhost" = 127.0.0.1 and nothing else, so no DNS query is made.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ip_vs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXSVC 64
#define MAXDST 64

struct svc {
	struct ip_vs_service_entry e;
	int ndests;
	struct ip_vs_dest_entry d[MAXDST];
};

static struct svc svcs[MAXSVC];
static int nsvcs;
static struct ip_vs_timeout_user timeouts = {900, 120, 300};
static int loaded;
static int fake_fd = -1;

static void read_stats(const char *s, struct ip_vs_stats_user *st)
{
	unsigned long long v[10] = {0};
	sscanf(s, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
	       &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
	st->conns = v[0]; st->inpkts = v[1]; st->outpkts = v[2];
	st->inbytes = v[3]; st->outbytes = v[4];
	st->cps = v[5]; st->inpps = v[6]; st->outpps = v[7]; st->inbps = v[8]; st->outbps = v[9];
}

/* the position after the n-th space-separated field */
static const char *skip_fields(const char *s, int n)
{
	while (n-- > 0) {
		while (*s == ' ') s++;
		while (*s && *s != ' ') s++;
	}
	return s;
}

static void load(void)
{
	const char *path = getenv("HALB_FAKE_IPVS_TABLE");
	char line[1024];
	FILE *f;

	if (loaded) return;
	loaded = 1;
	if (!path || !(f = fopen(path, "r"))) return;
	while (fgets(line, sizeof(line), f)) {
		char a[64], sched[32], mask[64];
		unsigned p, fw, fl, to, w, u, l, act, inact, pers, cf;
		if (line[0] == 'T') {
			sscanf(line + 1, "%d %d %d", &timeouts.tcp_timeout,
			       &timeouts.tcp_fin_timeout, &timeouts.udp_timeout);
		} else if (line[0] == 'S' && nsvcs < MAXSVC) {
			struct svc *s = &svcs[nsvcs++];
			unsigned proto;
			memset(s, 0, sizeof(*s));
			sscanf(line + 1, "%u %63s %u %u %31s %u %u %63s", &proto, a, &p, &fw, sched,
			       &fl, &to, mask);
			s->e.protocol = proto;
			inet_pton(AF_INET, a, &s->e.addr);
			s->e.port = htons(p);
			s->e.fwmark = fw;
			strncpy(s->e.sched_name, sched, IP_VS_SCHEDNAME_MAXLEN - 1);
			s->e.flags = fl;
			s->e.timeout = to;
			inet_pton(AF_INET, mask, &s->e.netmask);
			read_stats(skip_fields(line + 1, 8), &s->e.stats);
		} else if (line[0] == 'D' && nsvcs > 0) {
			struct svc *s = &svcs[nsvcs - 1];
			struct ip_vs_dest_entry *d;
			if (s->ndests >= MAXDST) continue;
			d = &s->d[s->ndests++];
			memset(d, 0, sizeof(*d));
			sscanf(line + 1, "%63s %u %u %u %u %u %u %u %u", a, &p, &cf, &w, &u, &l, &act,
			       &inact, &pers);
			inet_pton(AF_INET, a, &d->addr);
			d->port = htons(p);
			d->conn_flags = cf;
			d->weight = (int)w;
			d->u_threshold = u;
			d->l_threshold = l;
			d->activeconns = act;
			d->inactconns = inact;
			d->persistconns = pers;
			read_stats(skip_fields(line + 1, 9), &d->stats);
			s->e.num_dests = s->ndests;
		}
	}
	fclose(f);
}

int socket(int domain, int type, int protocol)
{
	static int (*real)(int, int, int);
	if (domain == AF_INET && type == SOCK_RAW && protocol == IPPROTO_RAW) {
		fake_fd = open("/dev/null", O_RDWR);
		return fake_fd;
	}
	if (!real) real = dlsym(RTLD_NEXT, "socket");
	return real(domain, type, protocol);
}

static struct svc *find(const struct ip_vs_service_entry *q)
{
	for (int i = 0; i < nsvcs; i++) {
		struct ip_vs_service_entry *e = &svcs[i].e;
		if (q->fwmark ? e->fwmark == q->fwmark
			      : (e->protocol == q->protocol && e->addr == q->addr &&
				 e->port == q->port))
			return &svcs[i];
	}
	return NULL;
}

int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
{
	static int (*real)(int, int, int, void *, socklen_t *);
	if (fd != fake_fd || fd < 0 || level != IPPROTO_IP) {
		if (!real) real = dlsym(RTLD_NEXT, "getsockopt");
		return real(fd, level, optname, optval, optlen);
	}
	load();
	switch (optname) {
	case IP_VS_SO_GET_VERSION:
		snprintf(optval, *optlen, "IP Virtual Server version 1.2.1 (size=4096)");
		return 0;
	case IP_VS_SO_GET_INFO: {
		struct ip_vs_getinfo *i = optval;
		i->version = 0x010201;
		i->size = 4096;
		i->num_services = nsvcs;
		return 0;
	}
	case IP_VS_SO_GET_SERVICES: {
		struct ip_vs_get_services *g = optval;
		for (int i = 0; i < nsvcs && i < (int)g->num_services; i++)
			g->entrytable[i] = svcs[i].e;
		return 0;
	}
	case IP_VS_SO_GET_SERVICE: {
		struct ip_vs_service_entry *q = optval;
		struct svc *s = find(q);
		if (!s) { errno = ESRCH; return -1; }
		*q = s->e;
		return 0;
	}
	case IP_VS_SO_GET_DESTS: {
		struct ip_vs_get_dests *g = optval;
		struct ip_vs_service_entry q;
		struct svc *s;
		memset(&q, 0, sizeof(q));
		q.protocol = g->protocol; q.addr = g->addr; q.port = g->port; q.fwmark = g->fwmark;
		if (!(s = find(&q))) { errno = ESRCH; return -1; }
		for (int i = 0; i < s->ndests && i < (int)g->num_dests; i++)
			g->entrytable[i] = s->d[i];
		return 0;
	}
	case IP_VS_SO_GET_TIMEOUT:
		memcpy(optval, &timeouts, sizeof(timeouts));
		return 0;
	case IP_VS_SO_GET_DAEMON:
		memset(optval, 0, *optlen);
		return 0;
	}
	errno = ENOPROTOOPT;
	return -1;
}

static const char *setname(int op)
{
	switch (op) {
	case IP_VS_SO_SET_ADD: return "ADD";
	case IP_VS_SO_SET_EDIT: return "EDIT";
	case IP_VS_SO_SET_DEL: return "DEL";
	case IP_VS_SO_SET_FLUSH: return "FLUSH";
	case IP_VS_SO_SET_ADDDEST: return "ADDDEST";
	case IP_VS_SO_SET_DELDEST: return "DELDEST";
	case IP_VS_SO_SET_EDITDEST: return "EDITDEST";
	case IP_VS_SO_SET_TIMEOUT: return "TIMEOUT";
	case IP_VS_SO_SET_STARTDAEMON: return "STARTDAEMON";
	case IP_VS_SO_SET_STOPDAEMON: return "STOPDAEMON";
	case IP_VS_SO_SET_ZERO: return "ZERO";
	}
	return "?";
}

int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
{
	static int (*real)(int, int, int, const void *, socklen_t);
	const char *logp = getenv("HALB_FAKE_IPVS_LOG");
	const char *errp = getenv("HALB_FAKE_IPVS_ERRNO");
	if (fd != fake_fd || fd < 0 || level != IPPROTO_IP) {
		if (!real) real = dlsym(RTLD_NEXT, "setsockopt");
		return real(fd, level, optname, optval, optlen);
	}
	if (logp) {
		FILE *f = fopen(logp, "a");
		if (f) {
			char a[32] = "", m[32] = "", d[32] = "";
			fprintf(f, "%s", setname(optname));
			if (optname == IP_VS_SO_SET_TIMEOUT) {
				const struct ip_vs_timeout_user *t = optval;
				fprintf(f, " %d %d %d", t->tcp_timeout, t->tcp_fin_timeout,
					t->udp_timeout);
			} else if (optlen >= sizeof(struct ip_vs_service_user)) {
				const struct ip_vs_service_user *s = optval;
				inet_ntop(AF_INET, &s->addr, a, sizeof(a));
				inet_ntop(AF_INET, &s->netmask, m, sizeof(m));
				fprintf(f, " proto=%u addr=%s port=%u fwmark=%u sched=%s flags=%u "
					"timeout=%u netmask=%s", s->protocol, a, ntohs(s->port),
					s->fwmark, s->sched_name, s->flags, s->timeout, m);
				if (optlen >= sizeof(struct ip_vs_service_user) +
					      sizeof(struct ip_vs_dest_user)) {
					const struct ip_vs_dest_user *u = (const void *)(s + 1);
					inet_ntop(AF_INET, &u->addr, d, sizeof(d));
					fprintf(f, " daddr=%s dport=%u conn_flags=%u weight=%d "
						"u=%u l=%u", d, ntohs(u->port), u->conn_flags,
						u->weight, u->u_threshold, u->l_threshold);
				}
			}
			fprintf(f, "\n");
			fclose(f);
		}
	}
	if (errp && atoi(errp)) {
		errno = atoi(errp);
		return -1;
	}
	return 0;
}

FILE *fopen(const char *path, const char *mode)
{
	static FILE *(*real)(const char *, const char *);
	const char *conn = getenv("HALB_FAKE_IPVS_CONN");
	if (!real) real = dlsym(RTLD_NEXT, "fopen");
	if (conn && !strcmp(path, "/proc/net/ip_vs_conn"))
		return real(conn, mode);
	return real(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
	static FILE *(*real)(const char *, const char *);
	const char *conn = getenv("HALB_FAKE_IPVS_CONN");
	if (!real) real = dlsym(RTLD_NEXT, "fopen64");
	if (conn && !strcmp(path, "/proc/net/ip_vs_conn"))
		return real(conn, mode);
	return real(path, mode);
}

/* name resolution without DNS: localhost <-> 127.0.0.1 only */
static struct hostent local_host;
static char *local_aliases[] = {NULL};
static struct in_addr local_addr;
static char *local_addrs[] = {(char *)&local_addr, NULL};

static struct hostent *localhost_entry(void)
{
	local_addr.s_addr = htonl(INADDR_LOOPBACK);
	local_host.h_name = "localhost";
	local_host.h_aliases = local_aliases;
	local_host.h_addrtype = AF_INET;
	local_host.h_length = sizeof(struct in_addr);
	local_host.h_addr_list = local_addrs;
	return &local_host;
}

struct hostent *gethostbyname(const char *name)
{
	if (name && !strcmp(name, "localhost"))
		return localhost_entry();
	h_errno = HOST_NOT_FOUND;
	return NULL;
}

struct hostent *gethostbyname2(const char *name, int af)
{
	if (af == AF_INET)
		return gethostbyname(name);
	h_errno = HOST_NOT_FOUND;
	return NULL;
}

struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type)
{
	if (type == AF_INET && len == sizeof(struct in_addr) &&
	    ((const struct in_addr *)addr)->s_addr == htonl(INADDR_LOOPBACK))
		return localhost_entry();
	h_errno = HOST_NOT_FOUND;
	return NULL;
}
