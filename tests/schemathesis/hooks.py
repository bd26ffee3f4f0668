# Lets schemathesis read the MessagePack answers the OpenAPI document lists.
import msgpack
import schemathesis

@schemathesis.deserializer("application/msgpack")
def msgpack_body(ctx, response):
    return msgpack.unpackb(response.content, raw=False)
