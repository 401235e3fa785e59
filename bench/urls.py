"""Every URL of the service, plus `bench/constant`: a plain DRF view that answers a constant body
(no database, no session check). The API benchmark compares the export endpoints with it under
the same gunicorn, middleware and load."""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from resourced.urls import handler400, handler403, handler404, handler500, urlpatterns as service_urlpatterns  # noqa: F401

CONSTANT_BODY = {"ErrorCode": 5, "ErrorMessage": "ready to download", "TimeWait": 0, "ImagePath": "/P/x.jpg",
                 "VideoPath": "/export/P/x.ts", "Version": "v1", "S3Dir": "export", "LackLength": 0,
                 "TaskId": "0" * 32, "Progress": 100, "Stage": "done"}


class ConstantApi(APIView):
    """The same shape as an export answer, without any work behind it."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request, *args, **kwargs):
        return Response(CONSTANT_BODY)

    def post(self, request, *args, **kwargs):
        request.data  # parse the body like the export view does
        return Response(CONSTANT_BODY)


urlpatterns = [path("bench/constant", ConstantApi.as_view(), name="bench-constant"), *service_urlpatterns]
