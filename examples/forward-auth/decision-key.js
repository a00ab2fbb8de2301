// The key of nginx's decision cache (nginx-server.conf) computed with njs, for nginx builds
// without the set-misc module the shipped configuration uses (nginx.org's packages:
// nginx-module-njs; Debian/Ubuntu: libnginx-mod-http-js). nginx-server.conf says where it goes.
//
// nginx writes each cache key, as is, into the cache file it belongs to. The inputs of a
// decision include the session cookie, the Authorization header and the URI (which may carry
// an app's own tokens), so the key is a SHA-256 of them: two requests share an answer only
// when every input is equal, and no credential ever reaches the cache directory.
//
// SECURITY: on any failure the key is empty, and nginx-server.conf neither looks up nor keeps
// an answer under an empty key (every request is then asked), so an error here can never make
// two requests share an answer.

import crypto from 'crypto';

// Every input of a decision, in a fixed order.
const INPUTS = [
    'request_method', 'scheme', 'http_host', 'request_uri',
    'http_cookie', 'http_authorization', 'http_x_tenant', 'remote_addr',
];

function key(r) {
    try {
        const hash = crypto.createHash('sha256');
        for (let i = 0; i < INPUTS.length; i++) {  // njs 0.7 (Debian 12) has no for-of
            // The raw bytes, each part prefixed by its length ('-' when absent): no two
            // different sets of inputs hash the same bytes.
            const value = r.rawVariables[INPUTS[i]];
            hash.update(value === undefined ? '-;' : value.length + ':');
            if (value !== undefined) {
                hash.update(value);
            }
        }
        return hash.digest('hex');
    } catch (e) {
        r.error('gateway decision key: ' + e.message);
        return '';
    }
}

export default { key };
