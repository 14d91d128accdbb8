build/obj/common/spiffe.o: common/spiffe.c common/ward.h
common/ward.h:
