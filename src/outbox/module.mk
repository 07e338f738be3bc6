# outbox and relay: transactional outbox drained to RabbitMQ (docs/outbox.md)
OBJS           += src/outbox/emit.o src/outbox/produce.o src/outbox/write.o src/outbox/aggseq.o src/outbox/deadletter.o src/outbox/relay.o \
                  src/outbox/relay_batch.o src/outbox/relay_publish.o src/outbox/relay_retry.o \
                  src/outbox/amqp.o src/outbox/durability.o src/outbox/publish_order.o
REGRESS        += outbox_emit outbox_api
ISOLATION      += outbox_aggregate_seq
ALX_SHLIB_LINK += -lrabbitmq
