# Prints an HS256 token: mint_jwt.py SECRET TENANT ROLE[,ROLE...]
import base64, hashlib, hmac, json, sys, time
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
secret, tenant, roles = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b64(json.dumps({"sub": "st", "tenant_id": tenant, "roles": roles, "exp": int(time.time()) + 7200}).encode())
s = b64(hmac.new(secret.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{s}")
