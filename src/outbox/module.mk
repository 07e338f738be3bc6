# outbox and relay: transactional outbox drained to RabbitMQ (docs/outbox.md)
OBJS           += src/outbox/emit.o src/outbox/produce.o src/outbox/relay.o src/outbox/amqp.o
REGRESS        += outbox_emit outbox_api
ALX_SHLIB_LINK += -lrabbitmq
