/* SPDX-License-Identifier: Apache-2.0 */
/* The credential providers that do I/O: credential_process, the container
 * endpoint, IMDSv2 and STS. Only the refreshing thread runs these. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "aws_creds_internal.h"
#include "rarewatch/aws.h"
#include "rarewatch/buf.h"
#include "rarewatch/sigv4.h"
#include "rarewatch/strutil.h"


static void wipe_buf(struct buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    buf_free(b);
}

static void free_secretp(char **s)
{
    if (*s) {
        explicit_bzero(*s, strlen(*s));
        free(*s);
    }
}

int creds_read_token_file(const char *path, size_t max, char **out)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    _cleanup_(wipe_buf) struct buf b = BUF_INIT;
    struct stat st;

    if (fd < 0)
        return negative_errno();
    if (fstat(fd, &st) < 0)
        return negative_errno();
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    for (;;) {
        if (buf_reserve(&b, 4096) < 0)
            return -ENOMEM;
        ssize_t n = read(fd, b.data + b.len, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return negative_errno();
        if (n == 0)
            break;
        b.len += (size_t)n;
        b.data[b.len] = 0;
        if (b.len > max)
            return -EFBIG;
    }
    while (b.len && strchr(" \t\r\n", b.data[b.len - 1]))
        b.data[--b.len] = 0;
    if (!b.len || memchr(b.data, 0, b.len))
        return -EINVAL;
    /* The token goes into a header or a form field: one line only. */
    for (size_t i = 0; i < b.len; i++)
        if ((unsigned char)b.data[i] < 0x20 || b.data[i] == 0x7f)
            return -EINVAL;
    *out = buf_steal(&b);
    return *out ? 0 : -ENOMEM;
}

/* ------------------------------------------------------------------ credential_process */

static int wait_exit(pid_t pid, int pidfd, uint64_t deadline, int *status)
{
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid)
            return 0;
        if (w < 0 && errno != EINTR)
            return negative_errno();
        uint64_t now = now_monotonic_usec();
        if (now >= deadline)
            return -ETIMEDOUT;
        if (pidfd >= 0) {
            struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
            (void)poll(&pfd, 1, (int)MIN((deadline - now + 999) / 1000, (uint64_t)INT32_MAX));
        } else {
            /* No pidfd (kernel < 5.3): a bounded poll interval, the deadline
             * still decides. */
            (void)poll(NULL, 0, (int)MIN((deadline - now + 999) / 1000, (uint64_t)10));
        }
    }
}

static void kill_group(pid_t pid)
{
    /* The child leads its own process group (POSIX_SPAWN_SETPGROUP), so
     * this reaches the shell and whatever it started, and nothing else. */
    (void)kill(-pid, SIGKILL);
}

int creds_from_process(struct creds_chain *ch, const char *profile, const char *command,
                       struct aws_credentials **out, struct aws_error *err)
{
    _cleanup_(wipe_buf) struct buf b = BUF_INIT;
    _cleanup_close_ int rd = -1, wr = -1, pidfd = -1;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, dfl;
    int fds[2], status = 0, r;
    pid_t pid;
    char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)command, NULL };
    uint64_t deadline = now_monotonic_usec() + ch->process_timeout_usec;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return negative_errno();
    rd = fds[0];
    wr = fds[1];
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, wr, STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_init(&attr);
    /* The daemon blocks signals for its signalfd; the command must not
     * inherit that mask, nor ignored SIGPIPE. */
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGHUP);
    sigaddset(&dfl, SIGCHLD);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    r = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (r != 0) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "CredentialProcessFailed",
                      "process: cannot start credential_process of profile '%s': %s", profile,
                      strerror(r));
        return -r;
    }
    closep(&wr);
    wr = -1;
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

    const char *failure = NULL;
    for (;;) {
        uint64_t now = now_monotonic_usec();
        if (now >= deadline) {
            failure = "timeout";
            break;
        }
        struct pollfd pfd = { .fd = rd, .events = POLLIN };
        int pr = poll(&pfd, 1, (int)MIN((deadline - now + 999) / 1000, (uint64_t)INT32_MAX));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0) {
            failure = "poll";
            break;
        }
        if (pr == 0)
            continue;
        if (buf_reserve(&b, 4096) < 0) {
            failure = "nomem";
            break;
        }
        ssize_t n = read(rd, b.data + b.len, 4096);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break; /* EOF (or a read error: what was read is judged below) */
        b.len += (size_t)n;
        b.data[b.len] = 0;
        if (b.len > AWS_CREDS_PROCESS_MAX_OUTPUT) {
            failure = "toolarge";
            break;
        }
    }
    if (failure)
        kill_group(pid);
    if (wait_exit(pid, pidfd, failure ? UINT64_MAX : deadline, &status) == -ETIMEDOUT) {
        /* It closed its stdout but would not exit in time. */
        failure = "timeout";
        kill_group(pid);
        (void)wait_exit(pid, pidfd, UINT64_MAX, &status);
    }
    if (failure) {
        if (streq(failure, "timeout")) {
            char d[32];
            aws_error_set(err, AWS_ERR_CREDENTIALS, "CredentialProcessTimeout",
                          "process: credential_process of profile '%s' did not finish within %s; "
                          "killed",
                          profile, format_duration(d, sizeof(d), ch->process_timeout_usec));
            err->timeout = true;
            return -ETIMEDOUT;
        }
        if (streq(failure, "toolarge")) {
            aws_error_set(err, AWS_ERR_CREDENTIALS, "CredentialProcessFailed",
                          "process: credential_process of profile '%s' wrote more than %d bytes; "
                          "killed",
                          profile, AWS_CREDS_PROCESS_MAX_OUTPUT);
            return -EFBIG;
        }
        return streq(failure, "nomem") ? -ENOMEM : -EIO;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        /* Its output is not shown: it may hold half a secret. Its stderr
         * went to ours. */
        if (WIFSIGNALED(status))
            aws_error_set(err, AWS_ERR_CREDENTIALS, "CredentialProcessFailed",
                          "process: credential_process of profile '%s' was killed by signal %d",
                          profile, WTERMSIG(status));
        else
            aws_error_set(err, AWS_ERR_CREDENTIALS, "CredentialProcessFailed",
                          "process: credential_process of profile '%s' exited with status %d",
                          profile, WEXITSTATUS(status));
        return -EIO;
    }
    return aws_creds_parse_json(b.data ? b.data : "", b.len, AWS_CREDS_JSON_PROCESS, "process",
                                out, err);
}

/* ------------------------------------------------------------------ HTTP helpers */

static struct http_client *metadata_client(const struct creds_chain *ch, uint64_t timeout)
{
    struct http_options o = ch->http;
    /* Link-local metadata services answer at once or not at all; a long
     * connect timeout would stall start-up everywhere else. */
    o.connect_timeout_usec = timeout;
    o.timeout_usec = timeout;
    o.max_response_bytes = 1 << 20;
    return http_client_new(&o);
}

/* GET/PUT with one retry after a transport error or a 5xx. */
static int request_retry(struct http_client *c, const char *method, const char *url,
                         const struct http_header *h, size_t nh, unsigned attempts,
                         uint64_t timeout, struct http_response *resp, struct aws_error *err)
{
    int r = -EIO;
    for (unsigned i = 0; i < attempts; i++) {
        r = http_request(c, method, url, h, nh, NULL, 0, timeout, resp, err);
        if (r >= 0 && resp->status < 500)
            return r;
    }
    return r;
}

/* ------------------------------------------------------------------ container */

static bool allowed_full_uri(const char *uri)
{
    if (startswith(uri, "https://"))
        return true;
    if (!startswith(uri, "http://"))
        return false;
    const char *h = uri + 7, *end;
    char host[64];
    if (*h == '[') {
        end = strchr(h, ']');
        if (!end)
            return false;
        h++;
    } else {
        end = h + strcspn(h, ":/?#");
    }
    if ((size_t)(end - h) >= sizeof(host))
        return false;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = 0;
    /* The SDKs allow plain HTTP only to the local machine and the ECS / EKS
     * agents: anything else could be spoofed on the network. */
    if (streq(host, "localhost") || streq(host, "169.254.170.2") || streq(host, "169.254.170.23"))
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        static const struct in6_addr eks = { { { 0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0,
                                                 0, 0, 0, 0x23 } } };
        return IN6_IS_ADDR_LOOPBACK(&a6) || memcmp(&a6, &eks, sizeof(eks)) == 0;
    }
    return false;
}

int creds_from_container(struct creds_chain *ch, struct aws_credentials **out,
                         struct aws_error *err)
{
    const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *token_file = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *token_env = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    _cleanup_(free_secretp) char *token = NULL;
    _cleanup_free_ char *url = NULL;
    _cleanup_(http_client_freep) struct http_client *c = NULL;
    struct http_response resp = { 0 };
    int r;

    if (rel && *rel) {
        if (rel[0] != '/' || asprintf(&url, "http://169.254.170.2%s", rel) < 0) {
            aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidContainerUri",
                          "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with '/'");
            return url ? -EINVAL : -ENOMEM;
        }
    } else if (full && *full) {
        if (!allowed_full_uri(full)) {
            aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidContainerUri",
                          "container: AWS_CONTAINER_CREDENTIALS_FULL_URI must be https:// or "
                          "http:// to a loopback address or the container agent");
            return -EINVAL;
        }
        if (!(url = strdup(full)))
            return -ENOMEM;
    } else {
        creds_note_none(ch, "container: AWS_CONTAINER_CREDENTIALS_*_URI not set");
        return CREDS_NONE;
    }
    /* The file wins over the variable and is read on every refresh: the
     * agent rotates it. */
    if (token_file && *token_file) {
        if ((r = creds_read_token_file(token_file, 16384, &token)) < 0) {
            aws_error_set(err, AWS_ERR_CREDENTIALS, "ContainerTokenUnreadable",
                          "container: cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s: %s",
                          token_file, strerror(-r));
            return r;
        }
    } else if (token_env && *token_env) {
        if (strpbrk(token_env, "\r\n")) {
            aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidContainerToken",
                          "container: AWS_CONTAINER_AUTHORIZATION_TOKEN holds a line break");
            return -EINVAL;
        }
        if (!(token = strdup(token_env)))
            return -ENOMEM;
    }
    if (!(c = metadata_client(ch, 2 * USEC_PER_SEC)))
        return -ENOMEM;
    struct http_header h[] = { { "Authorization", token }, { "Accept", "application/json" } };
    r = request_retry(c, "GET", url, token ? h : h + 1, token ? 2 : 1, 2, 0, &resp, err);
    if (r < 0) {
        creds_wrap_error(err, "container: cannot reach the credentials endpoint %s", url);
        http_response_free(&resp);
        return r;
    }
    if (resp.status != 200) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "ContainerCredentialsError",
                      "container: HTTP %d from the credentials endpoint %s", resp.status, url);
        err->http_status = resp.status;
        http_response_free(&resp);
        return -EIO;
    }
    r = aws_creds_parse_json(resp.body.data ? resp.body.data : "", resp.body.len,
                             AWS_CREDS_JSON_CONTAINER, "container", out, err);
    if (resp.body.data)
        explicit_bzero(resp.body.data, resp.body.len);
    http_response_free(&resp);
    return r;
}

/* ------------------------------------------------------------------ IMDSv2 */

static int imds_token(struct creds_chain *ch, struct http_client *c, const char *base,
                      bool force, struct aws_error *err)
{
    char url[600];
    struct http_response resp = { 0 };
    long long now = (long long)time(NULL);

    if (!force && ch->imds_token && now < ch->imds_token_expires)
        return 0;
    free_secretp(&ch->imds_token);
    ch->imds_token = NULL;
    snprintf(url, sizeof(url), "%s/latest/api/token", base);
    struct http_header h[] = { { "X-aws-ec2-metadata-token-ttl-seconds", "21600" } };
    int r = request_retry(c, "PUT", url, h, 1, 2, AWS_CREDS_IMDS_TIMEOUT_USEC, &resp, err);
    if (r < 0) {
        http_response_free(&resp);
        creds_note_none(ch, "IMDS: %s not reachable", base);
        return CREDS_NONE;
    }
    /* Some IMDS emulators end the token with a newline; it is no part of it. */
    while (resp.body.len && strchr(" \t\r\n", resp.body.data[resp.body.len - 1]))
        resp.body.data[--resp.body.len] = 0;
    if (resp.status != 200 || !resp.body.len || resp.body.len > 4096 ||
        strpbrk(resp.body.data, "\r\n")) {
        /* 403: IMDS disabled for this instance; 404/405: IMDSv1 only, which
         * we do not use (no token means no protection from SSRF). */
        creds_note_none(ch, "IMDS: HTTP %d to the token request at %s", resp.status, base);
        http_response_free(&resp);
        return CREDS_NONE;
    }
    ch->imds_token = buf_steal(&resp.body);
    http_response_free(&resp);
    if (!ch->imds_token)
        return -ENOMEM;
    /* Re-fetch well before the 6 h TTL runs out. */
    ch->imds_token_expires = now + 21600 - 300;
    return 0;
}

static int imds_get(struct creds_chain *ch, struct http_client *c, const char *base,
                    const char *url, struct http_response *resp, struct aws_error *err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int r = imds_token(ch, c, base, attempt > 0, err);
        if (r < 0)
            return r;
        struct http_header h[] = { { "X-aws-ec2-metadata-token", ch->imds_token } };
        r = request_retry(c, "GET", url, h, 1, 2, AWS_CREDS_IMDS_TIMEOUT_USEC, resp, err);
        if (r < 0) {
            creds_wrap_error(err, "imds: GET %s failed", url);
            return r;
        }
        /* 401: the session token expired (or IMDS restarted); get another. */
        if (resp->status != 401)
            return 0;
    }
    return 0;
}

int creds_from_imds(struct creds_chain *ch, struct aws_credentials **out, struct aws_error *err)
{
    const char *disabled = getenv("AWS_EC2_METADATA_DISABLED");
    const char *endpoint = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    const char *mode = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    _cleanup_(http_client_freep) struct http_client *c = NULL;
    struct http_response resp = { 0 };
    char base[512], url[1024], role[256];
    int r;

    if (disabled && strcasecmp(disabled, "true") == 0) {
        creds_note_none(ch, "IMDS: disabled by AWS_EC2_METADATA_DISABLED");
        return CREDS_NONE;
    }
    if (endpoint && *endpoint)
        snprintf(base, sizeof(base), "%s", endpoint);
    else if (mode && strcasecmp(mode, "IPv6") == 0)
        snprintf(base, sizeof(base), "http://[fd00:ec2::254]");
    else
        snprintf(base, sizeof(base), "http://169.254.169.254");
    for (size_t n = strlen(base); n && base[n - 1] == '/';)
        base[--n] = 0;
    if (!startswith(base, "http://") && !startswith(base, "https://")) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidImdsEndpoint",
                      "imds: AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http(s) URL");
        return -EINVAL;
    }
    if (!(c = metadata_client(ch, AWS_CREDS_IMDS_TIMEOUT_USEC)))
        return -ENOMEM;

    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", base);
    if ((r = imds_get(ch, c, base, url, &resp, err)) < 0) {
        http_response_free(&resp);
        return r;
    }
    if (resp.status == 404) {
        http_response_free(&resp);
        creds_note_none(ch, "IMDS: the instance has no IAM role");
        return CREDS_NONE;
    }
    size_t n = resp.body.data ? strcspn(resp.body.data, "\r\n") : 0;
    if (resp.status != 200 || n == 0 || n >= sizeof(role)) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InstanceProfileError",
                      "imds: HTTP %d listing the instance's role at %s", resp.status, base);
        err->http_status = resp.status;
        http_response_free(&resp);
        return -EIO;
    }
    memcpy(role, resp.body.data, n);
    role[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+=,.@_-", role[i])) {
            aws_error_set(err, AWS_ERR_CREDENTIALS, "InstanceProfileError",
                          "imds: the role name from %s is not a valid IAM role name", base);
            http_response_free(&resp);
            return -EINVAL;
        }
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", base, role);
    if ((r = imds_get(ch, c, base, url, &resp, err)) < 0) {
        http_response_free(&resp);
        return r;
    }
    if (resp.status != 200) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InstanceProfileError",
                      "imds: HTTP %d fetching the credentials of role %s", resp.status, role);
        err->http_status = resp.status;
        http_response_free(&resp);
        return -EIO;
    }
    r = aws_creds_parse_json(resp.body.data ? resp.body.data : "", resp.body.len,
                             AWS_CREDS_JSON_IMDS, "imds", out, err);
    if (resp.body.data)
        explicit_bzero(resp.body.data, resp.body.len);
    http_response_free(&resp);
    return r;
}

/* ------------------------------------------------------------------ STS */

static int sts_call(struct creds_chain *ch, const char *action, const struct sts_role *role,
                    const struct buf *form, const struct aws_credentials *signer,
                    const char *provider, struct aws_credentials **out, struct aws_error *err)
{
    char url[512];
    const char *src;
    _cleanup_(http_client_freep) struct http_client *c = NULL;
    _cleanup_(sigv4_key_cache_freep) struct sigv4_key_cache *kc = NULL;
    struct http_response resp = { 0 };
    int r;

    if (aws_endpoint_resolve(AWS_SVC_STS, role->region, &ch->ep, url, sizeof(url), &src) < 0) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "BadEndpoint",
                      "%s: no usable STS endpoint for region '%s'", provider, role->region);
        return -EINVAL;
    }
    if (!(c = http_client_new(&ch->http)))
        return -ENOMEM;
    if (signer && !(kc = sigv4_key_cache_new()))
        return -ENOMEM;
    struct http_header h[] = {
        { "Content-Type", "application/x-www-form-urlencoded; charset=utf-8" },
        { "Accept", "text/xml" },
    };
    r = aws_send_once(c, kc, signer, role->region, AWS_SVC_STS, url, h, ELEMENTSOF(h), form->data,
                      form->len, 0, &resp, err);
    if (r < 0) {
        creds_wrap_error(err, "%s: %s of %s at %s failed", provider, action, role->role_arn, url);
        http_response_free(&resp);
        return r;
    }
    r = aws_creds_parse_sts_xml(resp.body.data ? resp.body.data : "", resp.body.len, provider, out,
                                err);
    if (resp.body.data)
        explicit_bzero(resp.body.data, resp.body.len);
    http_response_free(&resp);
    return r;
}

static int sts_form(struct buf *b, const char *action, const struct sts_role *role,
                    const char *provider, struct aws_error *err)
{
    char session[64];
    int64_t dur;

    if (!role->role_arn || !startswith(role->role_arn, "arn:")) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidRoleArn", "%s: role_arn is not an ARN",
                      provider);
        return -EINVAL;
    }
    if (!role->session_name || !*role->session_name)
        snprintf(session, sizeof(session), "rarewatch-%llu",
                 (unsigned long long)(now_realtime_usec() / USEC_PER_MSEC));
    if (aws_form_append(b, "Action", action) < 0 || aws_form_append(b, "Version", "2011-06-15") < 0 ||
        aws_form_append(b, "RoleArn", role->role_arn) < 0 ||
        aws_form_append(b, "RoleSessionName",
                        role->session_name && *role->session_name ? role->session_name : session) < 0)
        return -ENOMEM;
    if (role->duration) {
        if (parse_int64(role->duration, 900, 43200, &dur) < 0) {
            aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidProfile",
                          "%s: duration_seconds must be a whole number from 900 to 43200",
                          provider);
            return -EINVAL;
        }
        if (aws_form_append(b, "DurationSeconds", role->duration) < 0)
            return -ENOMEM;
    }
    return 0;
}

int creds_assume_role(struct creds_chain *ch, const struct sts_role *role,
                      const struct aws_credentials *source, struct aws_credentials **out,
                      struct aws_error *err)
{
    _cleanup_buf_ struct buf form = BUF_INIT;
    int r;

    if ((r = sts_form(&form, "AssumeRole", role, "sts-assume-role", err)) < 0)
        return r;
    if (role->external_id && *role->external_id &&
        aws_form_append(&form, "ExternalId", role->external_id) < 0)
        return -ENOMEM;
    return sts_call(ch, "AssumeRole", role, &form, source, "sts-assume-role", out, err);
}

int creds_assume_role_web_identity(struct creds_chain *ch, const struct sts_role *role,
                                   const char *token_file, struct aws_credentials **out,
                                   struct aws_error *err)
{
    _cleanup_(wipe_buf) struct buf form = BUF_INIT;
    _cleanup_(free_secretp) char *token = NULL;
    int r;

    if ((r = creds_read_token_file(token_file, 65536, &token)) < 0) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "WebIdentityTokenUnreadable",
                      "web-identity: cannot read the web identity token file %s: %s", token_file,
                      r == -EINVAL ? "empty, not a regular file or not one line" : strerror(-r));
        return r == CREDS_NONE ? -EIO : r;
    }
    if ((r = sts_form(&form, "AssumeRoleWithWebIdentity", role, "web-identity", err)) < 0)
        return r;
    if (aws_form_append(&form, "WebIdentityToken", token) < 0)
        return -ENOMEM;
    /* Unsigned: the token is the proof of identity. */
    return sts_call(ch, "AssumeRoleWithWebIdentity", role, &form, NULL, "web-identity", out, err);
}
